"""`i2i compare` (`make compare`): every system on the embedded demo data, one seed, one budget of
training images, one table: system, problem, parameters, training images/s and the task's
validation metrics, so that the systems can be read side by side.

    i2i compare                                   # every demo config that ships, 4 kimg each
    i2i compare --configs demo pix2pix_demo --kimg 2 --out runs/compare

Each system trains from scratch with `seed_everything: 0` until it has seen `--kimg` thousand
training images, then its sampling network (G_ema for CoModGAN) is validated on the same fixed
validation images (and masks) as during training. The table goes to stdout and, with the raw
numbers, to `<out>/compare.json` and `<out>/compare.md`.

Deep image prior (`dip`) has no training: it optimises each evaluation image on its own
(`--dip-iterations`, `--dip-channels`), on the validation images and masks of another row's
config (`--dip-data`, the CoModGAN demo's), scored by the same metrics. Per-image optimisation is
slow on a CPU, so it completes only the first `--dip-images` of them; the table's last column says
how many images each row was scored on.

Classical baselines have no training either (`i2i.classical`): `classical:harmonic`,
`classical:biharmonic`, `classical:telea`, `classical:navier_stokes` fill the validation images
and masks of `--classical-data` (the CoModGAN demo's, the demo row's images and masks), and
`nearest_edges` retrieves the closest training pair of the edges demo. They are scored on the
same validation batches as the trained rows.

Two budgets: `--kimg` (training images) and `--minutes` (wall-clock minutes of training batches
on this machine); a system stops at whichever it reaches first, and the `budget` column says which
ended the row. LPIPS (AlexNet) and FID (Inception) of the validation outputs against their real
images are columns too: computed where their weights are in the torch hub cache
(`$TORCH_HOME/hub/checkpoints`, `i2i-weights` puts them there), "weights absent" otherwise. All
metrics score the outputs as saved: clamped to [-1, 1].
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from i2i.classical import FILLS
from i2i.config_files import PACKAGED_CONFIGS, load_config

# The embedded-data config of each system, in the order of the table (missing ones are skipped).
DEMO_CONFIGS = (
    "demo",
    "demo_edges",
    "demo_labels",
    "pix2pix_demo",
    "cyclegan_demo",
    "glcic_demo",
    "vae_demo",
    "dip",
    "classical:harmonic",
    "classical:biharmonic",
    "classical:telea",
    "classical:navier_stokes",
    "nearest_edges",
)
DIP = "dip"  # not a config: the no-training row (see the module doc)
CLASSICAL = "classical:"  # configs/classical.yaml with the fill after the colon
#: Whether FID's Inception file must carry its published hash (tests set a stand-in file).
CHECK_WEIGHTS_HASH = True


class TrainingClock(Callback):
    """Wall time spent in training batches only (not setup, validation or checkpoints); with a
    `budget_minutes`, training stops once that much time went into training batches."""

    def __init__(self, budget_minutes: float | None = None) -> None:
        self.seconds = 0.0
        self._start = 0.0
        self.budget_minutes = budget_minutes
        self.out_of_time = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds += time.perf_counter() - self._start
        if self.budget_minutes is not None and self.seconds >= self.budget_minutes * 60:
            self.out_of_time = not pl_module.finished()  # the image budget did not end it
            trainer.should_stop = True


def _weights_file(name: str) -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / name


def paper_metric_files() -> dict[str, Path]:
    """The weights file of each paper metric (LPIPS: AlexNet, FID: Inception)."""
    from i2i.metrics.features import INCEPTION_FILENAME
    from i2i.metrics.image import LPIPS_FILE

    return {"lpips": _weights_file(LPIPS_FILE), "fid": _weights_file(INCEPTION_FILENAME)}


class PaperMetrics(Callback):
    """LPIPS (AlexNet, per image, averaged) and FID (Inception pool3, outputs against their
    real images) of the validation outputs; each only where its weights file is present."""

    def __init__(self) -> None:
        files = paper_metric_files()
        self.present = {name: path.is_file() for name, path in files.items()}
        self._lpips = self._fid = None
        self._lpips_sum, self._lpips_n = 0.0, 0

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        from i2i.metrics import InceptionDiscriminativeScore
        from i2i.metrics.image import build_lpips

        if self.present["lpips"] and self._lpips is None:
            self._lpips = build_lpips(instead="remove the file").to(pl_module.device)
        if self.present["fid"] and self._fid is None:
            self._fid = InceptionDiscriminativeScore(
                compute_fid=True, check_hash=CHECK_WEIGHTS_HASH
            ).to(pl_module.device)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        from i2i.data import batch as B

        if B.IMAGE not in batch or "fake" not in outputs:  # unpaired: two directions, no pairs
            return
        real, fake = batch[B.IMAGE].float().clamp(-1, 1), outputs["fake"].float()
        if self._lpips is not None:
            values = self._lpips(fake, real)
            self._lpips_sum += float(values.sum())
            self._lpips_n += values.numel()
        if self._fid is not None:
            self._fid.update(real, fake)

    def results(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {"lpips": None, "fid": None}
        if self._lpips_n:
            out["lpips"] = self._lpips_sum / self._lpips_n
        if self._fid is not None and self._fid.fake_features:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # few images: the SVM's warnings
                out["fid"] = float(self._fid.compute()["fid"])
        return out


def count_parameters(task: L.LightningModule) -> tuple[int, int]:
    """(parameters of the network that samples, parameters of every trained network)."""
    sampler = getattr(task, "sampling_network", None)
    sampling = sum(p.numel() for p in sampler.parameters()) if sampler is not None else 0
    names = getattr(task, "trained_networks", None)
    if names:
        trained = sum(p.numel() for n in names for p in getattr(task, n).parameters())
    else:
        trained = sum(p.numel() for p in task.parameters() if p.requires_grad)
    return sampling, trained


def _validate(
    task: L.LightningModule, datamodule, val_batches: int
) -> tuple[dict[str, float], dict[str, float | None]]:
    """(the task's validation metrics, LPIPS / FID where their weights are present) on the
    first `val_batches` fixed validation batches."""
    paper = PaperMetrics()
    validator = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=val_batches,
        callbacks=[paper],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = validator.validate(task, datamodule=datamodule, verbose=False)[0]
    return {k: float(v) for k, v in metrics.items()}, paper.results()


def _val_images(datamodule, val_batches: int) -> int | None:
    size = len(getattr(datamodule, "val_dataset", None) or ())
    return min(size, val_batches * datamodule.val_batch_size) if size else None


def run_system(
    config: Path, kimg: float | None, root: Path, val_batches: int, minutes: float | None = None
) -> dict:
    """Train one demo config for `kimg` thousand images or `minutes` of training batches,
    whichever comes first, and validate it."""
    from i2i.lightning_command import run_cli

    clock_args = [] if minutes is None else [f"--trainer.callbacks.budget_minutes={minutes}"]

    cli = run_cli(
        [
            "fit",
            "--config",
            str(config),
            f"--trainer.default_root_dir={root}",
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            "--trainer.limit_val_batches=0",
            "--trainer.callbacks+=i2i.compare.TrainingClock",
            *clock_args,
            "--checkpoint.monitor=null",
            "--samples.every_n_iterations=0",
            "--model.init_args.max_iterations=null",
            f"--model.init_args.max_kimg={'null' if kimg is None else kimg}",
            "--trainer.max_time=null",  # one budget in images for every system (demo.yaml has one)
            "--overwrite",
        ],
    )
    task, datamodule = cli.model, cli.datamodule
    clock = next(cb for cb in cli.trainer.callbacks if isinstance(cb, TrainingClock))
    metrics, paper = _validate(task, datamodule, val_batches)
    sampling, trained = count_parameters(task)
    images = int(task.images_seen)
    return {
        "config": config.stem,
        "system": type(task).__name__,
        "problem": task.evaluation_protocol.name,
        "parameters_sampling": sampling,
        "parameters_trained": trained,
        "iterations": int(task.iteration),
        "images": images,
        "train_seconds": round(clock.seconds, 2),
        "images_per_second": round(images / clock.seconds, 1) if clock.seconds else None,
        "budget": {"kimg": kimg, "minutes": minutes},
        "ended_by": "minutes" if clock.out_of_time else "kimg",
        "val_images": _val_images(datamodule, val_batches),
        "metrics": metrics,
        **paper,
    }


def _trains(name: str) -> bool:
    """Whether the task of configs/<name>.yaml learns (a classical one has `trains = False`)."""
    from i2i.safe_load import check_class_path

    config = PACKAGED_CONFIGS / f"{name}.yaml"
    model = load_config(config).get("model") or {}
    if "class_path" not in model:
        return True
    return getattr(check_class_path(model["class_path"], config), "trains", True)


def _datamodule(data_config: Path, **overrides):
    """The config's datamodule, built as the CLI builds it (nested groups such as `images`
    parsed and checked), with `overrides` on its init_args."""
    from i2i.data.shards import instantiate_datamodule

    data = load_config(data_config)["data"]
    init_args = {**(data.get("init_args") or {}), **overrides}
    return instantiate_datamodule({"class_path": data["class_path"], "init_args": init_args})


def run_untrained(name: str, val_batches: int, data_config: Path | None = None) -> dict:
    """A system with no training (a classical fill, nearest-neighbour retrieval) scored on the
    first `val_batches` validation batches of `data_config` (default: its own config's data)."""
    from i2i.inference.model import build_task

    classical = name.startswith(CLASSICAL)
    config = PACKAGED_CONFIGS / ("classical.yaml" if classical else f"{name}.yaml")
    model = load_config(config)["model"]
    init_args = dict(model.get("init_args") or {})
    if classical:
        init_args["method"] = name[len(CLASSICAL) :]
    task = build_task(model["class_path"], init_args)
    datamodule = _datamodule(data_config or config, num_workers=0)
    start = time.perf_counter()
    metrics, paper = _validate(task, datamodule, val_batches)
    seconds = time.perf_counter() - start
    scored = _val_images(datamodule, val_batches)
    return {
        "config": name,
        "system": type(task).__name__,
        "problem": task.evaluation_protocol.name,
        "parameters_sampling": 0,
        "parameters_trained": 0,
        "iterations": 0,
        "images": 0,
        "train_seconds": 0.0,
        "images_per_second": None,
        # Wall time of its validation (data, the method, metrics) per image.
        "seconds_per_image": round(seconds / scored, 3) if scored else None,
        "ended_by": None,
        "data": (data_config or config).stem,
        "val_images": scored,
        "metrics": metrics,
        **paper,
    }


def run_dip(data_config: Path, images: int, iterations: int, channels: int) -> dict:
    """Deep image prior on the first `images` validation images (and masks) of `data_config`."""
    from i2i.tasks.dip import DeepImagePriorTask

    data = load_config(data_config)["data"]
    val_batch_size = min(images, (data.get("init_args") or {}).get("val_batch_size", images))
    # num_workers 0: loading is nothing next to the optimisation
    datamodule = _datamodule(data_config, val_batch_size=val_batch_size, num_workers=0)
    task = DeepImagePriorTask(iterations=iterations, network={"channels": channels})
    if datamodule.val_masks() is None:
        raise ValueError(f"--dip-data {data_config.stem}: its data has no masks (not inpainting)")
    val_batches = math.ceil(images / datamodule.val_batch_size)
    start = time.perf_counter()
    metrics, paper = _validate(task, datamodule, val_batches)
    seconds = time.perf_counter() - start
    sampling, _ = count_parameters(task)
    scored = _val_images(datamodule, val_batches)
    return {
        "config": DIP,
        "system": type(task).__name__,
        "problem": task.evaluation_protocol.name,
        "parameters_sampling": sampling,
        "parameters_trained": 0,  # a fresh network per image, fitted to that image alone
        "iterations": iterations,  # per image
        "images": 0,
        "train_seconds": 0.0,
        "images_per_second": None,
        # Wall time of its validation (data, optimisation, metrics) per image.
        "seconds_per_image": round(seconds / scored, 2) if scored else None,
        "ended_by": None,
        "data": data_config.stem,
        "val_images": scored,
        "metrics": metrics,
        **paper,
    }


ABSENT = "weights absent ¹"


def _metric_text(row: dict) -> str:
    """The task's validation metrics, without the classical reference a trained row logs beside
    its own (`l1_hole_biharmonic` in the demo): that method has its own row."""
    shown = {
        k.split("/", 1)[-1]: v
        for k, v in row["metrics"].items()
        if not any(k.endswith("_" + m) for m in FILLS)
    }
    return ", ".join(f"{k} {v:.3f}" for k, v in sorted(shown.items()))


def table(rows: list[dict]) -> str:
    """A markdown table of the runs, with a footnote where LPIPS / FID weights are absent."""
    lines = [
        "| config | system | problem | params (sampling / trained) | kimg | budget ended by | "
        "train img/s | validation | LPIPS | FID | val images |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    absent = False
    for r in rows:
        if r["config"] == DIP:  # no training: its optimisation per image instead
            kimg = f"0 ({r['iterations']} it/image)"
            speed = f"- ({r['seconds_per_image']} s/image)"
        elif r.get("seconds_per_image") is not None:  # no training at all
            kimg, speed = "0", f"- ({r['seconds_per_image']} s/image)"
        else:
            kimg, speed = f"{r['images'] / 1000:.1f}", r["images_per_second"]
        paper = []
        for name in ("lpips", "fid"):
            value = r.get(name)
            if value is not None:
                paper.append(f"{value:.3f}")
            elif r.get("problem") == "unpaired":
                paper.append("-")
            else:
                paper.append(ABSENT)
                absent = True
        lines.append(
            f"| {r['config']} | {r['system']} | {r['problem']} | "
            f"{r['parameters_sampling'] / 1e6:.2f} M / {r['parameters_trained'] / 1e6:.2f} M | "
            f"{kimg} | {r.get('ended_by') or 'no training'} | {speed} | {_metric_text(r)} | "
            f"{paper[0]} | {paper[1]} | {r.get('val_images')} |"
        )
    if absent:
        files = paper_metric_files()
        lines.append(
            f"\n¹ not computed: place {files['lpips']} (LPIPS, AlexNet) and {files['fid']} (FID, "
            "Inception) there (`i2i-weights` does, where there is network). FID over this few "
            "validation images is biased upward: compare the rows with each other only."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="i2i compare",
        description="Train every system on the embedded demo data with one seed and one budget, "
        "and print one table.",
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        default=None,
        help=f"packaged config names (default: those of {', '.join(DEMO_CONFIGS)} that exist)",
    )
    parser.add_argument(
        "--kimg",
        type=float,
        default=None,
        help="training images per system, x1000 (default 4, or none with --minutes)",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="wall-clock minutes of training batches per system on this machine "
        "(with --kimg: whichever comes first)",
    )
    parser.add_argument(
        "--classical-data",
        default="demo",
        help="the config whose validation images and masks the classical fills complete",
    )
    parser.add_argument("--val-batches", type=int, default=8, help="validation batches per system")
    parser.add_argument("--out", default=None, help="folder for compare.json / compare.md")
    parser.add_argument(
        "--dip-data",
        default="demo",
        help="deep image prior: the config whose validation images "
        "and masks it completes (default: demo, the same as vae_demo's)",
    )
    parser.add_argument("--dip-images", type=int, default=8, help="deep image prior: images")
    parser.add_argument("--dip-iterations", type=int, default=300, help="per image")
    parser.add_argument(
        "--dip-channels",
        type=int,
        default=64,
        help="the hourglass's width (the paper's: 128, about 4x slower on a CPU)",
    )
    args = parser.parse_args(argv)
    # run_cli gets its own arguments while sys.argv holds `compare ...`: intended here.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    configs = {p.stem for p in PACKAGED_CONFIGS.glob("*.yaml")}
    classical = [CLASSICAL + m for m in FILLS] if "classical" in configs else []
    known = {*configs, DIP, *classical}
    names = args.configs or [n for n in DEMO_CONFIGS if n in known]
    missing = [n for n in names if n not in known]
    if DIP in names and args.dip_data not in configs:
        missing.append(args.dip_data)
    if any(n.startswith(CLASSICAL) for n in names) and args.classical_data not in configs:
        missing.append(args.classical_data)
    if missing:
        parser.error(f"no config {missing} in {PACKAGED_CONFIGS}; available: {sorted(known)}")
    if min(args.dip_images, args.dip_iterations, args.dip_channels) < 1:
        parser.error("--dip-images, --dip-iterations and --dip-channels must be >= 1")
    if any(v is not None and v <= 0 for v in (args.kimg, args.minutes)):
        parser.error(f"--kimg and --minutes must be > 0, got {args.kimg} and {args.minutes}")
    kimg = 4.0 if args.kimg is None and args.minutes is None else args.kimg
    budgets = [f"{kimg:g} kimg"] if kimg else []
    budget = " or ".join([*budgets, *([f"{args.minutes:g} min"] if args.minutes else [])])
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="i2i-compare-"))
    rows = []
    for name in names:
        if name == DIP:
            what = f"{args.dip_images} images of {args.dip_data}, {args.dip_iterations} it each"
            print(f"i2i compare: deep image prior on {what} ...", flush=True)
            data = PACKAGED_CONFIGS / f"{args.dip_data}.yaml"
            rows.append(run_dip(data, args.dip_images, args.dip_iterations, args.dip_channels))
            continue
        if name.startswith(CLASSICAL) or not _trains(name):
            print(f"i2i compare: {name} (no training) ...", flush=True)
            data = PACKAGED_CONFIGS / f"{args.classical_data}.yaml"
            rows.append(run_untrained(name, args.val_batches, data if name in classical else None))
            continue
        print(f"i2i compare: training {name} for {budget} ...", flush=True)
        config = PACKAGED_CONFIGS / f"{name}.yaml"
        rows.append(run_system(config, kimg, out / name, args.val_batches, args.minutes))
    markdown = table(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(rows, indent=2))
    (out / "compare.md").write_text(markdown + "\n")
    print("\n" + markdown + f"\n\ni2i compare: written to {out}/compare.json and compare.md")
    return 0
