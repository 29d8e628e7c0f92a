"""The demo's tuning curves: each candidate demo config trained as `make train` trains it (the
same time bound), validated every `--every` iterations, its validation scores against minutes
beside the best classical fill's on the same images, in one run on this machine.

    python -m benchmarks.demo_tuning [--candidates before prefill ...] [--minutes 6.5]

Candidates run one after another, never side by side (they would share the 2 cores). Writes
`<out>/curves.json`, `<out>/curves.md` and `<out>/curves.png` (hole L1 and edge F1 against
minutes, the classical fill as a dashed line), and prints the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from PIL import Image, ImageDraw

from benchmarks.common import print_table

REPO = Path(__file__).resolve().parents[1]
REFERENCE = "biharmonic"  # the best classical fill on the demo scenes (docs/benchmarks.md)
PREFILLED = "i2i.networks.prefill.PrefilledCoModGenerator"
G = "--model.init_args.generator"

# name -> (what it is, CLI overrides of configs/demo.yaml)
CANDIDATES: dict[str, tuple[str, list[str]]] = {
    "before": (
        "CoModGAN reading the masked image, L1 weight 10 (the demo until now)",
        [f"{G}.class_path=i2i.networks.CoModGenerator", "--model.init_args.l1_weight=10"],
    ),
    "prefill": (
        "harmonic prefill and residual output, L1 weight 10",
        [f"{G}.class_path={PREFILLED}", "--model.init_args.l1_weight=10"],
    ),
    "prefill_l1x100": (
        "harmonic prefill, L1 weight 100 (configs/demo.yaml)",
        [f"{G}.class_path={PREFILLED}", "--model.init_args.l1_weight=100"],
    ),
    "prefill_l1x100_nodrop": (
        "harmonic prefill, L1 weight 100, no dropout on the global code",
        [
            f"{G}.class_path={PREFILLED}",
            "--model.init_args.l1_weight=100",
            f"{G}.init_args.global_dropout=0.0",
        ],
    ),
}


class ValidationCurve(Callback):
    """Appends one JSON line per validation to `path`: iteration, minutes since training
    started (validation included, as `trainer.max_time` counts them) and the val/ metrics."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._start = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        row = {
            "iteration": int(pl_module.iteration),
            "minutes": round((time.perf_counter() - self._start) / 60, 3),
            **{k: float(v) for k, v in metrics.items() if k.startswith("val/")},
        }
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")


def run_candidate(name: str, overrides: list[str], out: Path, every: int, minutes: float) -> list:
    folder = out / name
    curve = out / f"{name}.jsonl"
    curve.unlink(missing_ok=True)
    clock = f"00:00:{int(minutes):02d}:{round(minutes % 1 * 60):02d}"
    cmd = [
        sys.executable,
        "-m",
        "i2i",
        "fit",
        "--config",
        "configs/demo.yaml",
        *overrides,
        f"--model.init_args.classical_reference={REFERENCE}",
        f"--trainer.default_root_dir={folder}",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        f"--trainer.val_check_interval={every}",
        f"--trainer.max_time={clock}",
        "--samples.every_n_iterations=0",
        "--trainer.callbacks+=benchmarks.demo_tuning.ValidationCurve",
        f"--trainer.callbacks.path={curve}",
        "--overwrite",
    ]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{name} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return [json.loads(line) for line in curve.read_text().splitlines()]


def draw(curves: dict[str, list[dict]], path: Path) -> None:
    """Two panels, hole L1 and edge F1 against minutes; the classical fill dashed."""
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
    width, height, pad = 520, 300, 50
    sheet = Image.new("RGB", (2 * width, height + 24 * (len(curves) + 1)), "white")
    pen = ImageDraw.Draw(sheet)
    panels = [("l1_hole", "hole L1 (lower is better)"), ("edge_f1_hole", "edge F1 in the hole")]
    for panel, (key, title) in enumerate(panels):
        x0 = panel * width
        values = [r[f"val/{key}"] for rows in curves.values() for r in rows]
        values += [r[f"val/{key}_{REFERENCE}"] for rows in curves.values() for r in rows]
        lo, hi = min(values), max(values)
        lo, hi = lo - 0.05 * (hi - lo + 1e-6), hi + 0.05 * (hi - lo + 1e-6)
        t_max = max(r["minutes"] for rows in curves.values() for r in rows)

        def xy(
            t: float, v: float, x0: int = x0, lo: float = lo, hi: float = hi, t_max: float = t_max
        ) -> tuple[float, float]:
            return (
                x0 + pad + t / t_max * (width - 2 * pad),
                height - pad - (v - lo) / (hi - lo) * (height - 2 * pad),
            )

        pen.rectangle([x0 + pad, pad, x0 + width - pad, height - pad], outline="black")
        pen.text((x0 + pad, 15), title, fill="black")
        pen.text((x0 + width // 2 - 20, height - pad + 18), "minutes", fill="black")
        for v in (lo, (lo + hi) / 2, hi):
            pen.text((x0 + 4, xy(0, v)[1] - 6), f"{v:.3f}", fill="black")
        pen.text((x0 + width - pad - 10, height - pad + 4), f"{t_max:.1f}", fill="black")
        reference = next(iter(curves.values()))[0][f"val/{key}_{REFERENCE}"]
        y = xy(0, reference)[1]
        for x in range(x0 + pad, x0 + width - pad, 10):
            pen.line([x, y, x + 5, y], fill="black", width=2)
        for colour, rows in zip(colours, curves.values(), strict=False):
            points = [xy(r["minutes"], r[f"val/{key}"]) for r in rows]
            pen.line(points, fill=colour, width=3) if len(points) > 1 else None
            for px, py in points:
                pen.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
    for i, (colour, name) in enumerate(zip(colours, curves, strict=False)):
        y = height + 24 * i
        pen.rectangle([pad, y + 4, pad + 20, y + 14], fill=colour)
        pen.text((pad + 30, y + 2), f"{name}: {CANDIDATES[name][0]}", fill="black")
    y = height + 24 * len(curves)
    pen.line([pad, y + 9, pad + 20, y + 9], fill="black", width=2)
    pen.text((pad + 30, y + 2), f"classical:{REFERENCE} on the same images", fill="black")
    sheet.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--candidates",
        nargs="+",
        choices=CANDIDATES,
        default=["before", "prefill", "prefill_l1x100"],
    )
    parser.add_argument("--minutes", type=float, default=6.5, help="make train's time bound")
    parser.add_argument("--every", type=int, default=100, help="iterations between validations")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "demo_tuning")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    curves = {}
    for name in args.candidates:
        print(f"training {name} for {args.minutes:g} min ...", flush=True)
        curves[name] = run_candidate(name, CANDIDATES[name][1], args.out, args.every, args.minutes)
    rows = [
        {
            "candidate": name,
            "iteration": r["iteration"],
            "minutes": f"{r['minutes']:.2f}",
            "hole L1": f"{r['val/l1_hole']:.4f}",
            "edge F1": f"{r['val/edge_f1_hole']:.3f}",
        }
        for name, rs in curves.items()
        for r in rs
    ]
    ref = next(iter(curves.values()))[-1]
    title = (
        f"Demo candidates, validation against minutes ({REFERENCE} on the same images: "
        f"hole L1 {ref[f'val/l1_hole_{REFERENCE}']:.4f}, edge F1 "
        f"{ref[f'val/edge_f1_hole_{REFERENCE}']:.3f})"
    )
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        print_table(rows, title)
    print(table.getvalue(), flush=True)
    (args.out / "curves.json").write_text(json.dumps(curves, indent=1))
    (args.out / "curves.md").write_text(table.getvalue())
    draw(curves, args.out / "curves.png")
    print(f"wrote {args.out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
