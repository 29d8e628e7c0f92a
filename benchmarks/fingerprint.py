"""Behaviour fingerprint: proof that a restructuring changed no number.

Trains every embedded-data config for a few iterations as a user would (`i2i fit`, a subprocess),
validates the two systems that have no training (`i2i validate`), and runs `i2i inpaint` and
`i2i translate` on fixed inputs. It records the SHA-256 of the trained weights, every logged
value (losses and validation metrics, full precision) and the bytes of every written image.

    python -m benchmarks.fingerprint --out runs/fingerprint/before.json
    python -m benchmarks.fingerprint --out runs/fingerprint/after.json \
        --against runs/fingerprint/before.json

With `--against`, it prints what differs and exits 1 if anything does. Run both on the same
machine: CPU kernels differ between instruction sets, so a fingerprint is per machine.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

# config -> how it is exercised: "fit" trains a few iterations, "validate" runs validation only.
CONFIGS = {
    "demo": "fit",
    "demo_edges": "fit",
    "demo_labels": "fit",
    "pix2pix_demo": "fit",
    "cyclegan_demo": "fit",
    "glcic_demo": "fit",
    "vae_demo": "fit",
    "classical": "validate",
    "nearest_edges": "validate",
}
ITERATIONS = 4
# Logged values that measure the clock, not the model.
CLOCK_WORDS = ("time", "sec", "speed", "throughput", "epoch", "step")


def run(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "i2i", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        tail = result.stdout[-3000:] + "\n" + result.stderr[-3000:]
        sys.exit(f"`i2i {' '.join(args)}` failed:\n{tail}")


def tensor_digest(state: dict) -> str:
    """One hash of every tensor in a state dict, in key order (values and shapes)."""
    h = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        if isinstance(value, torch.Tensor):
            h.update(key.encode())
            h.update(str(tuple(value.shape)).encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def logged_values(root: Path) -> dict[str, str]:
    """Every logged value of the CSV logger's metrics.csv, repr'd at full precision."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("metrics.csv")):
        with open(path) as f:
            for n, row in enumerate(csv.DictReader(f)):
                for key, value in row.items():
                    if value and not any(w in key for w in CLOCK_WORDS):
                        out[f"{n}:{key}"] = value
    return out


def files_digest(folder: Path) -> dict[str, str]:
    """The written images (not the logs beside them, which name the temporary folder)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.suffix in (".png", ".jpg", ".npy")
    }


def logger_args(root: Path) -> list[str]:
    return [
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.init_args.save_dir={root}",
        f"--trainer.default_root_dir={root}",
    ]


def fingerprint(work: Path) -> dict:
    out: dict = {}
    for name, mode in CONFIGS.items():
        root = work / "runs" / name  # apart from the command outputs (one is "classical")
        config = ["--config", str(REPO / "configs" / f"{name}.yaml")]
        if mode == "fit":
            run(
                [
                    "fit",
                    *config,
                    *logger_args(root),
                    f"--model.init_args.max_iterations={ITERATIONS}",
                    f"--trainer.val_check_interval={ITERATIONS // 2}",
                    "--trainer.limit_val_batches=1",
                    "--trainer.max_time=null",
                ],
                cwd=REPO,
            )
            ckpt = torch.load(
                root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
            )
            weights = tensor_digest(ckpt["state_dict"])
            out[name] = {"weights": weights, "logged": logged_values(root)}
        else:
            run(["validate", *config, *logger_args(root), "--trainer.limit_val_batches=1"], REPO)
            out[name] = {"logged": logged_values(root)}
        print(f"{name}: done", flush=True)

    scenes = work / "scenes"
    subprocess.run(
        [sys.executable, "-m", "i2i.data.synthetic", "--out", str(scenes), "--count", "3"],
        check=True,
        capture_output=True,
    )
    run(
        [
            "inpaint",
            str(work / "runs" / "demo" / "checkpoints" / "last.ckpt"),
            "--image",
            str(scenes / "images"),
            "--mask",
            str(scenes / "masks"),
            "--mask-polarity",
            "white_is_hole",
            "--num-samples",
            "2",
            "--panel",
            "--out",
            str(work / "inpainted"),
        ],
        REPO,
    )
    run(
        [
            "inpaint",
            "classical:biharmonic",
            "--image",
            str(scenes / "images"),
            "--mask",
            str(scenes / "masks"),
            "--mask-polarity",
            "white_is_hole",
            "--out",
            str(work / "classical"),
        ],
        REPO,
    )
    run(
        [
            "translate",
            str(work / "runs" / "demo_edges" / "checkpoints" / "last.ckpt"),
            "--input",
            str(scenes / "images"),
            "--edges-from-photo",
            "--num-samples",
            "2",
            "--out",
            str(work / "translated"),
        ],
        REPO,
    )
    for folder in ("inpainted", "classical", "translated"):
        out[f"i2i {folder}"] = files_digest(work / folder)
    return out


def differences(before: dict, after: dict, prefix: str = "") -> list[str]:
    lines = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            lines += differences(a, b, f"{prefix}{key}/")
        elif a != b:
            lines.append(f"{prefix}{key}: {a} -> {b}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the fingerprint JSON to write")
    parser.add_argument("--against", type=Path, help="an earlier fingerprint to compare with")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="i2i-fingerprint-") as work:
        result = fingerprint(Path(work))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True))
    if args.against is None:
        return 0
    diff = differences(json.loads(args.against.read_text()), result)
    print("\n".join(diff) if diff else "identical: every weight, logged value and written byte")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
