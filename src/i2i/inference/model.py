"""A trained model for inference: one object, whatever file it came from.

`load_model(path)` reads
- a Lightning checkpoint (`.ckpt`) of any i2i task, built from the model config that `i2i fit`
  records in it (`RunRecord`, key "i2i") or, for older checkpoints, from the run's `config.yaml`;
- the project's own model file: `<name>.safetensors` (the sampling network's state dict: G_ema
  for CoModGAN) beside `<name>.json`, a small model card (see `write_model`);
- an exported `.onnx` file (`i2i.inference.onnx_backend`).
and returns an `InferenceModel`: the task's own condition, sampling and composite over the
sampling network, so inference needs neither a config nor Lightning's trainer.

Only what sampling needs is built: the card keeps the task class and its arguments without the
optimizers and the discriminator (a training-only network), and the task is constructed with a
placeholder in the discriminator's place (see `NoDiscriminator`).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from i2i.errors import ModelFileError, RefusedFileError
from i2i.inference.classical import is_classical, load_classical
from i2i.inference.model_format import (
    CARD_SUFFIX,
    WEIGHTS_SUFFIX,
    base_name,
    beside,
    inference_init_args,
    new_card,
    read_card,
    write_model,
)
from i2i.inference.onnx_backend import load_onnx
from i2i.io import sha256_of
from i2i.resolution import as_hw
from i2i.safe_load import (
    check_class_names,
    check_class_path,
    damaged,
    load_checkpoint,
    loadable_beside,
)


class NoDiscriminator(nn.Module):
    """Stands in for the discriminator of a task built for inference: tasks take one in their
    constructor, sampling never calls it, and building (and storing) the real one would cost
    memory and a second network's arguments in every model card."""

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Refuses: a task built for inference cannot be trained.

        Args:
            *args: ignored.
            **kwargs: ignored.

        Raises:
            RuntimeError: always.
        """
        raise RuntimeError(
            "this task was built for inference (i2i.inference.model.load_model): it has no "
            "discriminator; train from the Lightning checkpoint and its config instead"
        )


# ---- building the task ---------------------------------------------------------------------


def instantiate(value: Any, where: str | Path = "the model") -> Any:
    """{class_path, init_args} dicts (LightningCLI's form) -> objects, recursively; a class
    path is checked before anything is imported or called (`i2i.safe_load.check_class_path`):
    a card is data, never code.

    Args:
        value: a config value: a {class_path, init_args} dict, a dict, a list or a plain value
            (returned as it is).
        where: the file the value came from, named in errors.

    Raises:
        RefusedFileError: a class path outside what `i2i.safe_load` allows.
    """
    if isinstance(value, dict) and "class_path" in value:
        cls = check_class_path(value["class_path"], where)
        args = {k: instantiate(v, where) for k, v in (value.get("init_args") or {}).items()}
        return cls(**args)
    if isinstance(value, dict):
        return {k: instantiate(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [instantiate(v, where) for v in value]
    return value


def _constructor_parameters(cls: type) -> list[str]:
    """The constructor arguments a class accepts, following **kwargs up its bases."""
    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters.values()
        names += [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names


def build_task(class_path: str, init_args: dict, where: str | Path = "the model") -> nn.Module:
    """The task for inference: its arguments without the training-only ones, a placeholder
    for the discriminator (see `NoDiscriminator`).

    Args:
        class_path: the task's class path (`i2i.tasks.CoModGANInpainting`, ...).
        init_args: the task's constructor arguments, as a config records them.
        where: the file they came from, named in errors.

    Raises:
        RefusedFileError: a class path in them outside what `i2i.safe_load` allows.
    """
    task = {"class_path": class_path, "init_args": inference_init_args(init_args)}
    check_class_names(task, where)  # the whole tree, before any of it is imported
    for name in _constructor_parameters(check_class_path(class_path, where)):
        if name.startswith("discriminator") and name not in task["init_args"]:
            task["init_args"][name] = NoDiscriminator()  # an object: instantiate keeps it
    return instantiate(task, where)


def task_kind(task: nn.Module) -> str:
    """The kind of problem a task solves: "inpainting", "edges" or "labels".

    Args:
        task: an i2i task.

    Raises:
        ModelFileError: a task of none of these kinds (the file commands do not serve it).
    """
    from i2i.tasks import EdgesToPhoto, Inpainting, LabelsToPhoto

    kinds = ((Inpainting, "inpainting"), (EdgesToPhoto, "edges"), (LabelsToPhoto, "labels"))
    for mixin, kind in kinds:
        if isinstance(task, mixin):
            return kind
    raise ModelFileError(
        f"{type(task).__name__} is neither inpainting nor edges/labels -> photo: i2i's file "
        "commands do not serve it"
    )


def _sampling_prefix(task: nn.Module) -> str:
    """The state-dict prefix of the task's sampling network ("generator_ema" for CoModGAN)."""
    for name, module in task.named_children():
        if module is task.sampling_network:
            return name
    raise ModelFileError(f"{type(task).__name__}'s sampling network is not one of its children")


def _load_state(network: nn.Module, state: dict, where: Path, fix: str) -> None:
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ModelFileError(
            f"the weights in {where} do not fit the network the model describes "
            f"({' '.join(first[1:3]).strip() or first[0]}): {fix}"
        ) from e


# ---- the model -----------------------------------------------------------------------------


class InferenceModel:
    """A task ready to sample: `model(batch, z)` or `model.sample(batch, seed=...)` on batches
    of the batch contract (`i2i.data.batch`) at `resolution`; outputs in [-1, 1].

    Args:
        task: the task, moved to `device`, put in eval mode and frozen.
        card: its model card (`i2i.inference.model_format.new_card`): kind, resolution, ...
        device: where it runs.
    """

    def __init__(self, task: nn.Module, card: dict, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.task = task.to(self.device).eval().requires_grad_(False)
        self.card = card
        self.kind: str = card["kind"]
        self.resolution: tuple[int, int] = as_hw(card["resolution"])
        net = task.sampling_network
        self.z_dim: int | None = getattr(net, "z_dim", None)
        self.has_latent = self.z_dim is not None and getattr(net, "mapping", True) is not None
        self.num_classes: int | None = getattr(task, "num_classes", None)
        self.cond_channels: int | None = getattr(task, "cond_channels", None) or getattr(
            net, "cond_channels", None
        )

    def __repr__(self) -> str:
        h, w = self.resolution
        return (
            f"InferenceModel({self.card['task']['class_path']}, {self.kind}, {h}x{w}, "
            f"device={self.device}, source={self.card.get('source') or '-'})"
        )

    def _on_device(self, batch: dict) -> dict:
        return {k: v.to(self.device) for k, v in batch.items()}

    @torch.no_grad()
    def __call__(
        self,
        batch: dict,
        z: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        noise_mode: str = "const",
    ) -> torch.Tensor:
        """The task's output for a batch and latents z (N, z_dim): its condition, the sampling
        network, its composite (inpainting keeps the known pixels). Other randomness (CoModGAN's
        dropout on g) draws from torch's global RNG: seed it, or use `sample`."""
        batch = self.task.prepare(self._on_device(batch))
        if not self.has_latent:
            return self.task.generate(self.task.sampling_network, batch)
        if z is None:
            raise ValueError(f"this model takes latents: pass z of shape (N, {self.z_dim})")
        return self.task.generate(
            self.task.sampling_network,
            batch,
            z.to(self.device),
            truncation_psi=truncation_psi,
            noise_mode=noise_mode,
        )

    def sample(
        self, batch: dict, *, seed: int = 0, variant: int = 0, truncation_psi: float | None = None
    ) -> torch.Tensor:
        """The task's own seeded sampling (`ImageTask.sample`, what `i2i predict` returns) with
        `eval_seed = seed`: z of the sample with dataset index i is drawn from
        derive_seed(seed, i, variant), the rest of the randomness (noise, dropout) from
        derive_seed(seed, first index of the batch, variant).

        Args:
            batch: a batch of the batch contract with "index" (N,), the samples' dataset
                indices.
            seed: the evaluation seed.
            variant: which of several samples of one input (0, 1, ...).
            truncation_psi: truncation toward the average w (1 = none); None: the task's own
                `truncation_psi_eval`.

        Returns:
            (N, 3, H, W) in [-1, 1].
        """
        hp = self.task.hparams
        overrides: dict[str, Any] = {"eval_seed": int(seed)}
        if truncation_psi is not None and "truncation_psi_eval" in hp:
            overrides["truncation_psi_eval"] = float(truncation_psi)
        saved = {k: hp[k] for k in overrides}
        hp.update(overrides)
        try:
            return self.task.sample(self._on_device(batch), variant)
        finally:
            hp.update(saved)

    def placeholder_image(self, n: int) -> torch.Tensor:
        """The batch's "image" where there is no photo (translation): tasks read its dtype.

        Args:
            n: the batch size.

        Returns:
            Zeros (n, 3, H, W) at the model's resolution, on the CPU.
        """
        return torch.zeros(n, 3, *self.resolution)


# ---- loading ------------------------------------------------------------------------------


def _run_config(ckpt: Path) -> tuple[dict | None, Path | None]:
    """The model section of the run's config.yaml (the run folder holds checkpoints/), and
    that file."""
    for folder in (ckpt.parent.parent, ckpt.parent):
        config = folder / "config.yaml"
        if config.is_file():
            model = (yaml.safe_load(config.read_text()) or {}).get("model")
            if isinstance(model, dict) and "class_path" in model:
                return model, config
    return None, None


def load_task(path: str | Path, trust_checkpoint: bool = False) -> tuple[nn.Module, dict]:
    """The inference task with its sampling network's trained weights, from a Lightning
    checkpoint of an i2i run, loaded weights-only (`i2i.safe_load`) unless `trust_checkpoint`.

    Args:
        path: the `.ckpt` file.
        trust_checkpoint: unpickle the checkpoint in full (`--trust-checkpoint`).

    Returns:
        (the task, its model card); the card is also the task's `i2i_card`, what `save_model`
            writes.

    Raises:
        FileNotFoundError: no file at path.
        ModelFileError: a damaged file, no recorded model config or resolution, or weights
            that do not fit the config.
        RefusedFileError: a checkpoint that does not load weights-only, without trust.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: give the path of a .ckpt file")
    try:
        checkpoint = load_checkpoint(path, trust=trust_checkpoint or None)
    except RefusedFileError:
        raise
    except Exception as e:  # torch raises many types on a truncated or foreign file
        others = loadable_beside(path)
        fix = (
            f"use one that loads: {'; '.join(others)}"
            if others
            else f"no other checkpoint in {path.parent} loads"
        )
        raise ModelFileError(f"{damaged(path, e)}; {fix}") from None
    if not isinstance(checkpoint, dict):
        raise ModelFileError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint")
    config, where = (checkpoint.get("i2i") or {}).get("model"), path
    if not config:
        config, where = _run_config(path)
    if not config:
        raise ModelFileError(
            f"{path} records no model config (it was not written by `i2i fit`) and no "
            f"config.yaml lies in {path.parent.parent}: place the run's config.yaml there"
        )
    task = build_task(config["class_path"], config.get("init_args") or {}, where)
    prefix = _sampling_prefix(task) + "."
    state = checkpoint.get("state_dict") or {}
    network_state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    _load_state(
        task.sampling_network,
        network_state,
        path,
        "the checkpoint and its recorded config disagree; use the run's own config.yaml",
    )
    hp = checkpoint.get("datamodule_hyper_parameters") or {}
    resolution = hp.get("resolution") or getattr(task.sampling_network, "img_resolution", None)
    if resolution is None:
        raise ModelFileError(f"{path} records no resolution (no datamodule hyperparameters)")
    images = state.get("images_seen")
    card = new_card(
        config["class_path"],
        config.get("init_args") or {},
        resolution,
        task_kind(task),
        None if images is None else int(images) / 1000,
        {},
        str(path),
    )
    task.i2i_card = card  # what save_model writes
    return task, card


def save_model(
    task: nn.Module | InferenceModel, path: str | Path, metrics: dict | None = None
) -> Path:
    """Write the model file pair (`.safetensors` and `.json`) of a trained task or model.

    Args:
        task: a task from `load_task` or an `InferenceModel` from `load_model`: it carries its
            card.
        path: the pair's name (with or without a suffix).
        metrics: scores to add to the card's metrics (None: none).

    Returns:
        The card's path.

    Raises:
        ValueError: the task carries no card.
    """
    card = task.card if isinstance(task, InferenceModel) else getattr(task, "i2i_card", None)
    task = task.task if isinstance(task, InferenceModel) else task
    if card is None:
        raise ValueError(
            f"{type(task).__name__} carries no model card (its networks' arguments): load it "
            "with i2i.inference.model.load_task(ckpt) or load_model(ckpt), or call write_model"
        )
    return write_model(
        path,
        task_class_path=card["task"]["class_path"],
        task_init_args=card["task"]["init_args"],
        network_state=task.sampling_network.state_dict(),
        resolution=tuple(card["resolution"]),
        kind=card["kind"],
        kimg=card.get("kimg"),
        metrics={**card.get("metrics", {}), **(metrics or {})},
        source=card.get("source", ""),
    )


def _load_pair(path: Path) -> tuple[nn.Module, dict]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    card = read_card(path)
    base = base_name(path)
    weights = base.parent / card["weights"].get("file", base.name + WEIGHTS_SUFFIX)
    if not weights.is_file():
        raise FileNotFoundError(
            f"the model card {beside(base, CARD_SUFFIX)} names the weights {weights}, which do "
            f"not exist: place {weights.name} beside the card"
        )
    expected = card["weights"].get("sha256")
    actual = sha256_of(weights)
    if expected and actual != expected:
        raise ModelFileError(
            f"{weights} has SHA-256 {actual}, but its card {beside(base, CARD_SUFFIX)} says "
            f"{expected}: the file is damaged or belongs to another model; copy it again, or "
            "rewrite both with write_model"
        )
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise ModelFileError(f"cannot read {weights} as safetensors: {e}") from e
    task = build_task(
        card["task"]["class_path"], card["task"].get("init_args") or {}, beside(base, CARD_SUFFIX)
    )
    _load_state(task.sampling_network, state, weights, "the card and the weights disagree")
    task.i2i_card = card
    return task, card


def load_model(
    path: str | Path, device: str | torch.device = "cpu", trust_checkpoint: bool = False
) -> InferenceModel:
    """A model from a `.ckpt`, a `.safetensors` / `.json` pair (either name, or the name
    without suffix), an exported `.onnx` file, or `classical:NAME` (a fill with no file).

    Args:
        path: the model file, or `classical:NAME`.
        device: where it runs (a classical fill always runs on the CPU).
        trust_checkpoint: unpickle a `.ckpt` in full (`--trust-checkpoint`, with a warning);
            otherwise it is loaded weights-only.

    Returns:
        An `InferenceModel`; for an `.onnx` file an `OnnxModel` with the same interface.

    Raises:
        FileNotFoundError: no model at path.
        ModelFileError: an unknown file type, or a file that is damaged or does not fit its card.
    """
    if is_classical(path):
        return InferenceModel(*load_classical(str(path)), "cpu")  # a fill runs on the CPU
    path = Path(path)
    if path.suffix == ".onnx":
        return load_onnx(path, device)
    if path.suffix == ".ckpt":
        task, card = load_task(path, trust_checkpoint)
    elif path.suffix in (WEIGHTS_SUFFIX, CARD_SUFFIX, "") or not path.exists():
        if not beside(base_name(path), CARD_SUFFIX).exists() and not path.exists():
            raise FileNotFoundError(
                f"no model at {path}: give a .ckpt, a .safetensors file with its .json card "
                "beside it, or an .onnx file"
            )
        task, card = _load_pair(path)
    else:
        raise ModelFileError(
            f"{path}: unknown model file type {path.suffix!r}; give a .ckpt, a .safetensors "
            "file with its .json card, or an .onnx file"
        )
    return InferenceModel(task, card, device)


__all__ = [
    "InferenceModel",
    "ModelFileError",
    "NoDiscriminator",
    "load_model",
    "load_task",
    "read_card",
    "save_model",
    "write_model",
]
