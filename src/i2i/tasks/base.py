"""What every system shares: `ImageTask`.

A task is a thin LightningModule over plain networks. This base holds what does not depend on how
a system is trained:
- the iteration and image counters (in the state dict, so a resumed run continues them) and the
  run length (`max_iterations` or `max_kimg`);
- the training randomness: one stream per (seed, rank, iteration), so every rank draws its own
  latents and a resumed run draws exactly what an uninterrupted one would;
- sampling with fixed latents and seeds (`sample`), the validation / test / predict steps, the
  task's cheap metrics and the sample-grid panels;
- `batches_per_step`: how many batches of `batch_size` one training step consumes per process
  (CoModGAN: 2, its G and D steps each take their own reals); the CLI links it into the
  datamodule, which yields batches of `batches_per_step x batch_size`.

Problems (inpainting, edges -> photo, labels -> photo) are mixins in their own files that say
what the condition is, how the output is composed and what is measured; systems (CoModGAN,
pix2pix, ...) say how the networks are trained.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import lightning as L
import torch
from torch import nn

from i2i.data import batch as B
from i2i.metrics.protocols import EvaluationProtocol, PairedTranslationProtocol
from i2i.seeding import derive_seed


def set_tf32(allow: bool) -> None:
    """TF32 for fp32 matmuls and cuDNN convolutions on GPUs.

    Off by default, so that `precision: 32` computes in fp32 as the official code does (PyTorch
    turns cuDNN's TF32 on by default).

    Args:
        allow: turn TF32 on (True) or off (False) for both.
    """
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow


class ImageTask(L.LightningModule):
    """The base of every system.

    Subclasses implement `training_step` (or the adversarial layer's phases), `generate` and the
    problem hooks at the bottom.

    Args:
        max_iterations: stop after this many iterations; None for no limit.
        max_kimg: stop after this many thousand images (all processes); None for no limit.
        channels_last: lay out the batch's 4-D tensors in channels_last (what the losses, the
            composites and the classic networks read). CoModGAN's networks convert their own
            inputs on CPU whatever this says (`i2i.networks.ops.to_fast_layout`); on GPUs they
            run in the layout they are given.
        allow_tf32: GPUs: TF32 matmuls and convolutions (fast, about a 10-bit mantissa).
        eval_seed: seeds z and noise in validation and test, so numbers compare across runs.
    """

    #: Batches of `batch_size` that one training step consumes per process.
    batches_per_step: int = 1
    #: What `i2i test` and the validation metrics measure (`i2i.metrics.protocols`); the problem
    #: mixins name theirs (inpainting: masks, hole-ratio buckets, hole metrics).
    evaluation_protocol: type[EvaluationProtocol] = PairedTranslationProtocol
    #: Whether the condition is an image (edges) rather than a mask or a one-hot map: the
    #: official CoModGAN edges model feeds D a 6-channel real, so its R1 covers both.
    condition_is_image: bool = False
    #: Constructor arguments kept out of `hparams`: injected networks and optimizer callables
    #: (LightningCLI would turn the callables into dicts).
    not_hyperparameters: tuple[str, ...] = ()

    def __init__(
        self,
        max_iterations: int | None = None,  # stop after this many iterations (None = no limit)
        max_kimg: float | None = None,  # stop after this many thousand images (None = no limit)
        channels_last: bool = True,  # the batch's layout (CoModGAN's networks convert on CPU)
        allow_tf32: bool = False,  # GPUs: TF32 matmuls and convolutions (fast, ~10-bit mantissa)
        eval_seed: int = 0,  # seeds z and noise in validation, so numbers compare across runs
    ):
        super().__init__()
        # Collects the arguments of every subclass's __init__ too (they are on the stack).
        self.save_hyperparameters(ignore=list(self.not_hyperparameters))
        # Under LightningCLI, hparams are the config's arguments: one that a subclass passes
        # itself (a system with no training: channels_last=False) is not among them.
        own = dict(
            max_iterations=max_iterations,
            max_kimg=max_kimg,
            channels_last=channels_last,
            allow_tf32=allow_tf32,
            eval_seed=eval_seed,
        )
        for name, value in own.items():
            self.hparams.setdefault(name, value)
        # Counters live in the state dict, so a resumed run continues them exactly.
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        self.register_buffer("images_seen", torch.zeros((), dtype=torch.long))
        # Wall time per training phase, filled only when a benchmark sets it to a defaultdict.
        self.phase_seconds: defaultdict[str, float] | None = None

    # ---- setup and counters ------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """Apply `allow_tf32` before fitting, testing or predicting."""
        set_tf32(self.hparams.allow_tf32)

    @property
    def world_size(self) -> int:
        """The number of processes (1 without a trainer)."""
        return self.trainer.world_size if self._trainer is not None else 1

    @property
    def kimg(self) -> float:
        """Thousands of images seen in training, over all processes."""
        return self.images_seen.item() / 1000

    def finished(self) -> bool:
        """Whether the run has reached its length (`max_iterations` or `max_kimg`)."""
        hp = self.hparams
        return (hp.max_iterations is not None and int(self.iteration) >= hp.max_iterations) or (
            hp.max_kimg is not None and self.kimg >= hp.max_kimg
        )

    def count_iteration(self, images_per_process: int) -> None:
        """Advance the counters by one iteration and log `train/kimg` and `train/iteration`.

        Args:
            images_per_process: the images one process used in this iteration.
        """
        self.iteration += 1
        self.images_seen += images_per_process * self.world_size
        self.log("train/kimg", self.kimg, batch_size=images_per_process)
        self.log("train/iteration", float(self.iteration), batch_size=images_per_process)

    def shape_change_note(self, old_batch: int, new_batch: int) -> str:
        """What a resumed run with another global batch means for training.

        Printed at resume (see `i2i.data.elastic`).

        Args:
            old_batch: the global batch (images per use and iteration, all processes) of the
                checkpoint's run.
            new_batch: the global batch of this run.

        Returns:
            The note: the learning rate is not rescaled, and, when the batch changed, which settings
            count iterations.
        """
        length = ["max_iterations"] if self.hparams.max_iterations is not None else []
        counted = [*length, *self.iteration_settings(), "the validation and checkpoint intervals"]
        text = (
            "The learning rate is not rescaled: every optimizer step takes the configured rate "
            "whatever the batch (scale it in the config if you want to)."
        )
        if old_batch != new_batch:
            text += (
                f" What counts iterations ({', '.join(counted)}) now means {new_batch} images "
                f"per iteration instead of {old_batch}; max_kimg and the kimg counter count "
                "images and stay exact."
            )
        return text

    def iteration_settings(self) -> list[str]:
        """The task's settings counted in iterations, named in `shape_change_note`."""
        return []

    def on_train_batch_start(self, batch, batch_idx) -> None:
        """Seed the training randomness by (seed, rank, iteration).

        Args:
            batch (dict): the training batch (unused).
            batch_idx (int): its index in the epoch (unused).
        """
        # Latents, mixing, noise and dropout draw from a stream seeded by (seed, rank, iteration):
        # every rank draws its own latents (seed_everything alone gives all ranks the same), and
        # a resumed run draws exactly what an uninterrupted one would, with no RNG state to save.
        base = int(os.environ.get("PL_GLOBAL_SEED", 0))
        torch.manual_seed(derive_seed(base, self.global_rank, int(self.iteration)))

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        """Stop the trainer once the run has reached its length (`finished`).

        Args:
            outputs (Any): the training step's output (unused).
            batch (dict): the training batch (unused).
            batch_idx (int): its index in the epoch (unused).
        """
        if self.finished():
            self.trainer.should_stop = True

    # ---- the training step's helpers -----------------------------------------------------

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """A named range for profilers (`i2i/<name>`), and wall time when benchmarking.

        Args:
            name: the phase's name; its time adds to `phase_seconds[name]` when that is set.
        """
        with torch.profiler.record_function(f"i2i/{name}"):
            if self.phase_seconds is None:
                yield
                return
            start = time.perf_counter()
            yield
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.phase_seconds[name] += time.perf_counter() - start

    def split_batch(self, batch: dict) -> list[dict]:
        """Split a training batch into its `batches_per_step` parts, in order.

        The loader yields `batches_per_step` x batch_size samples: one part per use (CoModGAN: the
        first half for G, the second for D).

        Args:
            batch: the loader's batch dict; every value has the samples along dimension 0.

        Returns:
            `batches_per_step` batch dicts of batch_size samples.

        Raises:
            ValueError: the batch is not a multiple of `batches_per_step` samples.
        """
        parts = self.batches_per_step
        n = next(iter(batch.values())).shape[0]
        if n < parts or n % parts:
            raise ValueError(
                f"{type(self).__name__} takes {parts} batches per step, so a training batch "
                f"needs a multiple of {parts} samples, got {n}: is the datamodule's "
                f"batches_per_step {parts}?"
            )
        size = n // parts
        return [{k: v[i * size : (i + 1) * size] for k, v in batch.items()} for i in range(parts)]

    def prepare(self, batch: dict) -> dict:
        """The batch in the task's memory layout.

        Args:
            batch: a batch dict.

        Returns:
            The batch with its 4-D tensors in channels_last when `channels_last` is set, else as is.
        """
        if self.hparams.channels_last:
            return {
                k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v
                for k, v in batch.items()
            }
        return batch

    # ---- sampling and evaluation -------------------------------------------------------------

    @property
    def sampling_network(self) -> nn.Module:
        """The network that evaluation and sampling use (CoModGAN: G_ema)."""
        return self.generator

    def eval_kwargs(self) -> dict:
        """Keyword arguments of `generate` in evaluation (CoModGAN: its truncation psi)."""
        return {}

    def eval_latents(self, batch: dict, variant: int = 0) -> torch.Tensor | None:
        """A fixed z per sample, seeded by its dataset index.

        Seeded by (eval_seed, index, variant), so outputs compare across evaluations and runs.

        Args:
            batch: a batch dict with "index".
            variant: which of several samples of one input (0 for the default).

        Returns:
            z (N, z_dim) on the task's device; None for a network without a latent input.
        """
        z_dim = getattr(self.sampling_network, "z_dim", None)
        if z_dim is None or getattr(self.sampling_network, "mapping", True) is None:
            return None
        seeds = [derive_seed(self.hparams.eval_seed, int(i), variant) for i in batch[B.INDEX]]
        zs = [torch.randn(z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds]
        return torch.stack(zs).to(self.device)

    @torch.no_grad()
    def sample(self, batch: dict, variant: int = 0) -> torch.Tensor:
        """The sampling network's output for a batch with fixed latents and seeded noise.

        The global RNG is left untouched so that evaluation never changes the course of training.

        Args:
            batch: a batch dict (see `i2i.data.batch`) with "index".
            variant: which of several samples of one input (0 for the default).

        Returns:
            The output (N, C, H, W), roughly in [-1, 1] (not clamped).
        """
        batch = self.prepare(batch)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(derive_seed(self.hparams.eval_seed, int(batch[B.INDEX][0]), variant))
            return self.generate(
                self.sampling_network,
                batch,
                self.eval_latents(batch, variant),
                **self.eval_kwargs(),
            )

    def validation_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        """Sample the batch, log the task's cheap metrics under `val/`, return {"fake": output}."""
        return self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        """Sample the batch, log the task's cheap metrics under `test/`, return {"fake": output}."""
        return self._evaluate(batch, "test")

    def _evaluate(self, batch: dict, stage: str) -> dict[str, torch.Tensor]:
        """The sampling network on a batch: logs the task's cheap metrics and returns the
        output, which metric callbacks (P-IDS / U-IDS / FID) read. Both see the output clamped
        to the image range, as it is saved, so that every number describes an image (an
        untrained network's raw output can reach 16); the protocols that quantise (Inception
        features) quantise it further."""
        fake = self.sample(batch).float().clamp(-1, 1)
        metrics = self.evaluation_metrics(fake, batch)
        n = batch[B.IMAGE].shape[0]
        self.log_dict(
            {f"{stage}/{k}": v for k, v in metrics.items()},
            batch_size=n,
            sync_dist=True,
            prog_bar=stage == "val",
        )
        return {"fake": fake}

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """Return {"fake": the output clamped to [-1, 1], "index": the batch's indices}."""
        return {"fake": self.sample(batch).clamp(-1, 1), B.INDEX: batch[B.INDEX]}

    # ---- system and problem hooks ----------------------------------------------------------

    def generate(
        self, G: nn.Module, batch: dict, z: torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        """The task's output for a batch: G on the task's condition, then the task's composite.

        Args:
            G: the generator (the training one, or the sampling network).
            batch: a batch dict.
            z: latents (N, z_dim); None calls G on the condition alone.
            **kwargs (Any): G's keyword arguments (passed only with a `z`), e.g. truncation_psi.

        Returns:
            The output (N, C, H, W), roughly in [-1, 1].
        """
        raw = G(self.condition(batch)) if z is None else G(self.condition(batch), z, **kwargs)
        return self.compose(raw, batch)

    def condition(self, batch: dict) -> torch.Tensor:
        """The generator's condition tensor for a batch.

        Args:
            batch: a batch dict.

        Returns:
            (N, cond_channels, H, W).
        """
        raise NotImplementedError

    def d_condition(self, batch: dict) -> torch.Tensor:
        """What a conditional discriminator sees next to the image.

        Args:
            batch: a batch dict.

        Returns:
            (N, C_cond, H, W).
        """
        raise NotImplementedError

    def compose(self, raw: torch.Tensor, batch: dict) -> torch.Tensor:
        """The task's output from the raw generator output (inpainting composites).

        Args:
            raw: the generator's output (N, C, H, W).
            batch: the batch dict it was made from.

        Returns:
            (N, C, H, W); here `raw` unchanged.
        """
        return raw

    def reconstruction_loss(self, fake: torch.Tensor, batch: dict) -> torch.Tensor:
        """Per-sample distance of an output to its target (in the hole, for inpainting).

        Args:
            fake: the output (N, C, H, W).
            batch: the batch dict with the target.

        Returns:
            (N,) distances.
        """
        raise NotImplementedError

    def evaluation_metrics(self, fake: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """The task's cheap metrics of a batch, logged as `stage/name`; none here.

        Args:
            fake: the output clamped to [-1, 1] (N, C, H, W).
            batch: the batch dict it was made from.

        Returns:
            Scalar tensors by name.
        """
        return {}

    def visual_panels(self, batch: dict, fake: torch.Tensor) -> list[torch.Tensor]:
        """The images shown side by side in the sample grid.

        Args:
            batch: a batch dict.
            fake: the output for the default latents (N, 3, H, W).

        Returns:
            Images in [-1, 1], each (N, 3, H, W); here the output and the real image.
        """
        return [fake, batch[B.IMAGE]]
