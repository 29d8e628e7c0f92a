"""`i2i export`: ONNX (run by onnxruntime) and torch.export files that compute what the PyTorch
model computes, at any batch size; the ONNX file as a model (`load_onnx`); clear errors."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from i2i.inference.export import SamplingGraph, export, main, read_torch_export
from i2i.inference.model import build_task, load_model, write_model
from i2i.inference.onnx_backend import OnnxModel
from i2i.networks.prefill import harmonic_prefill
from i2i.seeding import derive_seed
from tests.clirun import MODES, run_i2i
from tests.conftest import TINY_G

TOL = 1e-4
RES = 32
INPAINTING = "i2i.tasks.InpaintingTask"
PREFILLED = "i2i.networks.prefill.PrefilledCoModGenerator"


def inpainting_batch(n: int, seed: int) -> tuple[dict, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch = {
        "image": torch.rand(n, 3, RES, RES, generator=g) * 2 - 1,
        "mask": (torch.rand(n, 1, RES, RES, generator=g) > 0.4).float(),
        "index": torch.arange(n),
    }
    return batch, torch.randn(n, 32, generator=g)


@pytest.fixture(scope="module")
def noisy_model(tmp_path_factory) -> Path:
    """The tiny inpainting model as the demo config builds it (harmonically prefilled), with
    non-zero noise strengths and residual gain: untrained ones are 0, which would hide the noise
    and the generator's residual from every comparison. Two Jacobi steps a level: the graph is
    the same as with the default, 8x shorter to export."""
    generator = {"img_resolution": RES, "cond_channels": 4, **TINY_G, "prefill_smoothing": 2}
    init_args = {"generator": {"class_path": PREFILLED, "init_args": generator}}
    torch.manual_seed(0)
    network = build_task(INPAINTING, init_args).sampling_network
    with torch.no_grad():
        for name, p in network.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.3)
        network.residual_gain.fill_(0.5)
    return write_model(
        tmp_path_factory.mktemp("noisy") / "inpainting",
        task_class_path=INPAINTING,
        task_init_args=init_args,
        network_state=network.state_dict(),
        resolution=RES,
        kind="inpainting",
        source="tests: untrained",
    )


@pytest.fixture(scope="module")
def onnx_file(noisy_model, tmp_path_factory) -> tuple[Path, str]:
    """The tiny inpainting model exported by the command (dropout as the network: on), in the
    test process: the exporter's half minute is the same in a process, the imports are not."""
    out = tmp_path_factory.mktemp("export") / "inpainting.onnx"
    args = ["export", "--ckpt", str(noisy_model), "--format", "onnx", "--out", str(out)]
    code, text = run_i2i("in_process", *args)
    assert code == 0, text[-3000:]
    return out, text


def test_export_command_writes_onnx_and_checks_it(onnx_file):
    path, text = onnx_file
    assert path.is_file()
    assert "dropout on" in text and "noise const" in text, text
    reported = float(text.split("max |exported - PyTorch| at batch 1:")[1].split()[0])
    assert reported < TOL
    proto = onnx.load(str(path))
    names = [i.name for i in proto.graph.input]
    assert names == ["image", "mask", "z", "truncation_psi", "dropout_keep"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


@pytest.mark.parametrize("n", [1, 3])
def test_onnx_matches_pytorch(onnx_file, noisy_model, n, one_torch_thread):
    graph = SamplingGraph(load_model(noisy_model).task, "inpainting")
    inputs = graph.example_inputs(n, seed=10 + n)
    inputs["truncation_psi"] = torch.tensor(0.7)
    session = ort.InferenceSession(str(onnx_file[0]), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {k: v.numpy() for k, v in inputs.items()})
    with torch.no_grad():
        expected = graph(inputs).numpy()
    assert got.shape == (n, 3, RES, RES)
    np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)
    # The keep-mask is a real input: another mask gives another output.
    inputs["dropout_keep"] = 1 - inputs["dropout_keep"]
    (other,) = session.run(None, {k: v.numpy() for k, v in inputs.items()})
    assert np.abs(other - got).max() > 1e-3


def test_the_onnx_file_holds_the_prefill_and_the_residual(onnx_file, noisy_model):
    """The sampling graph goes through the generator's encoder_input and output_image, so the
    harmonic prefill and the residual over it are in the ONNX file too."""
    graph = SamplingGraph(load_model(noisy_model).task, "inpainting")
    inputs = graph.example_inputs(3, seed=1)
    session = ort.InferenceSession(str(onnx_file[0]), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {k: v.numpy() for k, v in inputs.items()})
    with torch.no_grad():
        expected = graph(inputs)
        graph.G.residual_gain.fill_(0)
        fill_only = graph(inputs)
    np.testing.assert_allclose(got, expected.numpy(), atol=TOL, rtol=0)
    assert (expected - fill_only).abs().max() > 1e-2  # the residual is in the graph
    fill = harmonic_prefill(inputs["image"] * inputs["mask"], inputs["mask"], smoothing=2)
    torch.testing.assert_close(fill_only, fill, atol=1e-5, rtol=0)


def test_load_onnx_gives_the_torch_models_output(onnx_file, noisy_model, one_torch_thread):
    torch_model = load_model(noisy_model)
    onnx_model = load_model(onnx_file[0])
    assert isinstance(onnx_model, OnnxModel)
    for name in ("kind", "resolution", "z_dim", "has_latent", "cond_channels"):
        assert getattr(onnx_model, name) == getattr(torch_model, name), name
    assert onnx_model.card == torch_model.card
    batch, z = inpainting_batch(3, seed=1)
    # The same torch seed draws the same dropout mask in F.dropout and in the backend.
    torch.manual_seed(7)
    expected = torch_model(batch, z, truncation_psi=0.6)
    torch.manual_seed(7)
    got = onnx_model(batch, z, truncation_psi=0.6)
    torch.testing.assert_close(got, expected, atol=TOL, rtol=0)
    known = batch["mask"].expand_as(got) == 1
    assert torch.equal(got[known], batch["image"][known])  # the composite inside the graph
    torch.manual_seed(7)
    assert (onnx_model(batch, z, truncation_psi=1.0) - got).abs().max() > 1e-3
    torch.manual_seed(7)
    no_noise = torch_model(batch, z, truncation_psi=0.6, noise_mode="none")
    assert (no_noise - got).abs().max() > 1e-3  # the constant noise is in the graph


def test_onnx_sample_seeds_as_the_task(onnx_file, noisy_model, one_torch_thread):
    """`sample` (what i2i inpaint calls) draws z and the dropout mask as ImageTask.sample."""
    torch_model, onnx_model = load_model(noisy_model), load_model(onnx_file[0])
    batch, _ = inpainting_batch(2, seed=2)
    batch["index"] = torch.tensor([4, 9])
    task = torch_model.task
    task.hparams.eval_seed = 5
    z = task.eval_latents(batch, variant=1)
    torch.manual_seed(derive_seed(5, 4, 1))
    expected = torch_model(batch, z, truncation_psi=0.8, noise_mode="const")
    got = onnx_model.sample(batch, seed=5, variant=1, truncation_psi=0.8)
    torch.testing.assert_close(got, expected, atol=TOL, rtol=0)
    other = onnx_model.sample(batch, seed=5, variant=2, truncation_psi=0.8)
    assert (other - got).abs().max() > 1e-3


def test_torch_export_matches_the_task_without_dropout(model_files, tmp_path, one_torch_thread):
    model = load_model(model_files["inpainting"])
    path = tmp_path / "model.pt2"
    export(model, path, "torch-export", dropout=False)
    program, meta = read_torch_export(path)
    assert meta["kind"] == "inpainting" and meta["resolution"] == [RES, RES]
    assert meta["inputs"] == ["image", "mask", "z", "truncation_psi"] and not meta["dropout"]
    # The reference: the task's own generate on G_ema with its dropout switched off.
    model.task.sampling_network.encoder.dropout_at_inference = False
    for n in (1, 3):
        batch, z = inpainting_batch(n, seed=n)
        inputs = {"image": batch["image"], "mask": batch["mask"], "z": z}
        with torch.no_grad():
            got = program.module()({**inputs, "truncation_psi": torch.tensor(0.5)})
        torch.testing.assert_close(got, model(batch, z, truncation_psi=0.5), atol=TOL, rtol=0)


@pytest.mark.slow  # a second ONNX export: ~25 s of CPU
def test_labels_onnx_builds_the_tasks_condition(model_files, tmp_path, one_torch_thread):
    """Translation files take the condition tensor; the backend builds it with the task's own
    code (one-hot labels, with its range check)."""
    model = load_model(model_files["labels"])
    path = tmp_path / "labels.onnx"
    export(model, path, "onnx", dropout=False)
    onnx_model = load_model(path)
    assert onnx_model.kind == "labels" and onnx_model.num_classes == 5
    g = torch.Generator().manual_seed(0)
    label = torch.randint(0, 5, (2, RES, RES), generator=g)
    batch = {"label": label, "image": onnx_model.placeholder_image(2), "index": torch.arange(2)}
    z = torch.randn(2, 32, generator=g)
    model.task.sampling_network.encoder.dropout_at_inference = False
    torch.testing.assert_close(onnx_model(batch, z), model(batch, z), atol=TOL, rtol=0)
    with pytest.raises(ValueError, match="label value 7 is outside 0..4"):
        onnx_model({**batch, "label": label.clamp(max=4) + 3 * (label == 4)}, z)


def test_sampling_graph_leaves_the_model_alone(model_files):
    task = load_model(model_files["inpainting"]).task
    before = copy.deepcopy(task.sampling_network.state_dict())
    graph = SamplingGraph(task, "inpainting", dropout=False)
    assert task.sampling_network.encoder.dropout_at_inference  # the model keeps its dropout
    assert all(torch.equal(v, task.sampling_network.state_dict()[k]) for k, v in before.items())
    assert graph.input_names == ["image", "mask", "z", "truncation_psi"]
    with pytest.raises(ValueError, match="noise_mode must be"):
        SamplingGraph(task, "inpainting", noise_mode="fresh")


@pytest.mark.parametrize("mode", MODES)
def test_bad_format_exits_2_and_names_the_choices(tmp_path, mode):
    out = str(tmp_path / "m")
    code, text = run_i2i(mode, "export", "--ckpt", "x.ckpt", "--format", "tflite", "--out", out)
    assert code == 2
    assert "invalid choice: 'tflite'" in text and "onnx" in text


@pytest.mark.parametrize("mode", MODES)
def test_missing_checkpoint_exits_1_and_names_it(tmp_path, mode):
    missing = tmp_path / "nope.ckpt"
    out = tmp_path / "m.onnx"
    args = ("export", "--ckpt", str(missing), "--format", "onnx", "--out", str(out))
    code, text = run_i2i(mode, *args)
    assert code == 1
    assert f"no checkpoint at {missing}" in text
    assert not out.exists()


def test_suffix_and_existing_output_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--ckpt", "x.ckpt", "--format", "torch-export", "--out", str(tmp_path / "m.onnx")])
    assert exit_info.value.code == 2
    assert "a torch-export file ends in .pt2" in capsys.readouterr().err
    existing = tmp_path / "m.pt2"
    existing.write_bytes(b"keep")
    assert main(["--ckpt", "x.ckpt", "--format", "torch-export", "--out", str(existing)]) == 1
    assert "exists already; pass --overwrite" in capsys.readouterr().err
    assert existing.read_bytes() == b"keep"


def test_i2i_inpaint_runs_an_onnx_file(onnx_file, tmp_path):
    """The file commands take an exported model like any other (`load_model` -> `load_onnx`)."""
    from PIL import Image

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    hole = np.zeros((37, 53), np.uint8)
    hole[8:20, 10:30] = 255
    Image.fromarray(image).save(tmp_path / "images" / "a.png")
    Image.fromarray(hole).save(tmp_path / "masks" / "a.png")
    code, text = run_i2i(
        "in_process",
        "inpaint",
        str(onnx_file[0]),
        "--image",
        str(tmp_path / "images"),
        "--mask",
        str(tmp_path / "masks"),
        "--mask-polarity",
        "white_is_hole",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 0, text
    out = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    known = hole == 0
    assert out.shape == image.shape and np.array_equal(out[known], image[known])
    assert not np.array_equal(out[~known], image[~known])
