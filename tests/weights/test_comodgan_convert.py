"""Published CoModGAN weights -> i2i: official TF pickles and the port's G_ema state dicts.

No published file is needed: a tiny i2i model is written out as the file the official code (or
the port) would have made for it (variable names and shapes from the official code, values in
its layouts), pickled under the official class paths, and converted back.
"""

from __future__ import annotations

import os
import pickle
import stat
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from i2i.errors import ConversionError
from i2i.networks import CoModDiscriminator, CoModGenerator
from i2i.networks.layers import ModulatedConv2d
from i2i.networks.ops import fir_filter, upsample2d
from i2i.weights import comodgan as C
from i2i.weights import comodgan_map as M
from i2i.weights import tf_pickle
from tests.clirun import MODES, run_i2i
from tests.conftest import TINY_D, TINY_G, shared_data

RES = 32


def randomized(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter and buffer drawn at random, so that a wrong layout or a dropped +1
    cannot hide behind the initial zeros and ones."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in net.state_dict().values():  # not the fixed FIR filters (not persistent)
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=gen) * 0.5)
    return net.eval()


def tiny_models(image_first: bool = False, seed: int = 1):
    cond_g, cond_d = (3, 3) if image_first else (4, 1)
    gs = randomized(CoModGenerator(RES, cond_channels=cond_g, **TINY_G), seed)
    g = randomized(CoModGenerator(RES, cond_channels=cond_g, **TINY_G), seed + 1)
    d = randomized(CoModDiscriminator(RES, cond_channels=cond_d, **TINY_D), seed + 2)
    return g, d, gs


# ---- writing the files the official code and the port would have written -------------------


@contextmanager
def dnnlib_modules():
    """`dnnlib.tflib.network.Network` importable for pickle while the test writes a file:
    a minimal class whose pickled state is the tflib state dict."""
    names = ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")
    saved = {n: sys.modules.get(n) for n in names}
    modules = {n: types.ModuleType(n) for n in names}

    class Network:
        def __init__(self, state: dict):
            self._state = state

        def __getstate__(self) -> dict:
            return self._state

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    modules["dnnlib.tflib.network"].Network = Network
    sys.modules.update(modules)
    try:
        yield Network
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def network_state(name: str, variables: dict, components: dict | None = None, **kwargs) -> dict:
    """tflib's Network.__getstate__ (version 4)."""
    return {
        "version": 4,
        "name": name,
        "static_kwargs": kwargs,
        "components": components or {},
        "build_module_src": "# the build module's source",
        "build_func_name": {"G": "G_main", "Gs": "G_main", "D": "D_co_mod_gan"}.get(name, name),
        "variables": list(variables.items()),
    }


def official_variables(g, d, image_first: bool, edit=None):
    """The (G or Gs, D) variables an official run of this architecture would hold."""
    g_vars = M.unmap_state(g.state_dict(), M.generator_entries(g))
    g_vars["lod"] = np.float32(0.0)
    d_vars = M.unmap_state(d.state_dict(), M.discriminator_entries(d, image_first))
    if edit:
        edit(g_vars, d_vars)
    return g_vars, d_vars


def official_pickle(
    path: Path, g, d, gs, image_first: bool = False, edit=None, protocol: int = 3
) -> Path:
    """(G, D, Gs) pickled as the official training loop does, with numpy 1's class paths
    (protocol 3 is Python 3.6's default; protocol 2 stores bytes through _codecs.encode)."""
    kwargs = {"pix2pix": image_first, "resolution": RES, "dropout_rate": 0.5}
    with dnnlib_modules() as Network:

        def generator(name: str, variables: dict):
            parts = {"G_mapping": {}, "G_synthesis": {}, "": {}}
            for k, v in variables.items():  # "<component>/<local name>" or an own variable
                comp, _, local = k.partition("/") if k.startswith("G_") else ("", "", k)
                parts[comp][local] = v
            components = {
                "synthesis": Network(network_state("G_synthesis", parts["G_synthesis"], **kwargs)),
                "mapping": Network(network_state("G_mapping", parts["G_mapping"])),
            }
            return Network(network_state(name, parts[""], components, **kwargs))

        g_vars, d_vars = official_variables(g, d, image_first, edit)
        gs_vars, _ = official_variables(gs, d, image_first, edit)
        nets = (
            generator("G", g_vars),
            Network(network_state("D", d_vars, **kwargs)),
            generator("Gs", gs_vars),
        )
        data = pickle.dumps(nets, protocol=protocol)
    # numpy 1 (which wrote the official files) named its module numpy.core.
    path.write_bytes(data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))
    return path


def port_state(g: CoModGenerator) -> dict[str, torch.Tensor]:
    """The port's G_ema state dict for this architecture (its blur kernels included)."""
    entries, ignored = M.port_entries(g)
    state = {k: torch.from_numpy(v) for k, v in M.unmap_state(g.state_dict(), entries).items()}
    f = fir_filter()
    for key in ignored:
        gain = 4.0 if ".blur." in key or "upsample" in key else 1.0
        state[key] = torch.outer(f, f) * gain
    return state


# ---- outputs ------------------------------------------------------------------------------


def g_output(g: CoModGenerator, noise_mode: str = "const", psi: float = 0.7):
    torch.manual_seed(7)
    cond = torch.randn(2, g.cond_channels, RES, RES)
    z = torch.randn(2, g.z_dim)
    torch.manual_seed(8)  # the dropout on g draws here
    with torch.no_grad():
        return g(cond, z, truncation_psi=psi, noise_mode=noise_mode)


def d_output(d: CoModDiscriminator):
    torch.manual_seed(9)
    image = torch.randn(4, d.img_channels, RES, RES)
    cond = torch.randn(4, d.cond_channels, RES, RES)
    with torch.no_grad():
        return d(image, cond)


def assert_same_state(
    converted: dict, net: torch.nn.Module, skip: tuple[str, ...] = (), atol: float = 0.0
):
    """Every key of `net`, every value equal (exactly, unless `atol`)."""
    want = net.state_dict()
    assert set(converted) == set(want), set(converted) ^ set(want)
    for key, value in want.items():
        if not key.endswith(skip):
            torch.testing.assert_close(converted[key], value, atol=atol, rtol=0, msg=key)


# ---- the tests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image_first, protocol", [(False, 3), (True, 2)], ids=["inpainting", "edges-protocol2"]
)
def test_official_pickle_converts_to_the_same_networks(
    tmp_path, one_torch_thread, image_first, protocol
):
    g, d, gs = tiny_models(image_first)
    path = tmp_path / "co-mod-gan-tiny-025000.pkl"
    official_pickle(path, g, d, gs, image_first, protocol=protocol)
    if protocol == 2:
        assert b"c_codecs\nencode\n" in path.read_bytes()
    out = C.convert_file(path)

    assert out.image_first is image_first
    assert out.generator_args == {
        "img_resolution": RES,
        "cond_channels": gs.cond_channels,
        "img_channels": 3,
        "z_dim": TINY_G["z_dim"],
        "w_dim": TINY_G["w_dim"],
        "mapping_layers": TINY_G["mapping_layers"],
        "channel_base": TINY_G["channel_base"],
        "channel_max": TINY_G["channel_max"],
        "global_dim": TINY_G["global_dim"],
        "global_dropout": 0.5,
    }
    assert_same_state(out.generator_ema, gs)
    assert_same_state(out.generator, g)
    assert_same_state(out.discriminator, d)

    gs2 = CoModGenerator(**out.generator_args).eval()
    gs2.load_state_dict(out.generator_ema)
    d2 = CoModDiscriminator(**out.discriminator_args).eval()
    d2.load_state_dict(out.discriminator)
    torch.testing.assert_close(g_output(gs2), g_output(gs), atol=1e-6, rtol=0)
    torch.testing.assert_close(d_output(d2), d_output(d), atol=1e-6, rtol=0)


def test_official_variable_names_and_layouts(one_torch_thread):
    """Spot checks against the official code's names and shapes (training/co_mod_gan.py)."""
    g, d, _ = tiny_models()
    g_vars, d_vars = official_variables(g, d, image_first=False)
    c, c32 = TINY_G["channel_max"], TINY_G["channel_base"] // 16  # widths: 4..16 px, 32 px
    shapes = {k: tuple(np.shape(v)) for k, v in {**g_vars, **d_vars}.items()}
    assert shapes["G_mapping/Dense0/weight"] == (TINY_G["z_dim"], TINY_G["w_dim"])
    assert shapes["G_synthesis/E_32x32/FromRGB/weight"] == (1, 1, 4, c32)
    assert shapes["G_synthesis/E_4x4/Dense0/weight"] == (c * 16, TINY_G["global_dim"])
    assert shapes["G_synthesis/G_4x4/Dense/weight"] == (TINY_G["global_dim"], c * 16)
    style = TINY_G["w_dim"] + TINY_G["global_dim"]
    assert shapes["G_synthesis/G_32x32/Conv0_up/mod_weight"] == (style, c)
    assert shapes["G_synthesis/G_32x32/ToRGB/weight"] == (1, 1, c32, 3)
    assert shapes["G_synthesis/G_4x4/Conv/noise_strength"] == ()
    # noise<k> is layer k's: 4x4, then two per resolution (res = (k + 5) // 2)
    assert [shapes[f"G_synthesis/noise{k}"][-1] for k in range(7)] == [4, 8, 8, 16, 16, 32, 32]
    assert shapes["dlatent_avg"] == (TINY_G["w_dim"],)
    assert shapes["32x32/FromRGB/weight"] == (1, 1, 4, c32)
    assert shapes["32x32/Skip/weight"] == (1, 1, c32, c) and "32x32/Skip/bias" not in shapes
    assert shapes["Output/weight"] == (c, 1)
    # a dense layer is [in, out]; a style bias is stored as it is (the official code adds 1)
    np.testing.assert_array_equal(
        g_vars["G_mapping/Dense1/weight"], g.mapping.layers[1].weight.detach().T
    )
    np.testing.assert_array_equal(
        g_vars["G_synthesis/G_8x8/Conv1/mod_bias"], g.decoder.blocks["3"].conv.affine.bias.detach()
    )


def test_up_sampling_kernel_is_rotated_to_match_the_official_operation(one_torch_thread):
    """The official up-sampling conv is documented as upsample_2d followed by conv2d (done in
    one fused op): i2i's layer with the converted kernel gives exactly that away from the
    border (the fused op pads once, at the start), and the kernel taken unrotated does not."""
    torch.manual_seed(0)
    c_in, c_out = 3, 5
    tf_kernel = torch.randn(3, 3, c_in, c_out, dtype=torch.float64)
    x = torch.randn(1, c_in, 6, 6, dtype=torch.float64)
    scale = 1 / (c_in * 9) ** 0.5
    reference = F.conv2d(
        upsample2d(x, fir_filter().double()), tf_kernel.permute(3, 2, 0, 1) * scale, padding=1
    )

    def i2i_up(layout: str) -> torch.Tensor:
        layer = ModulatedConv2d(
            c_in,
            c_out,
            4,
            (12, 12),
            0,
            up=2,
            demodulate=False,
            use_noise=False,
            activation="linear",
        ).double()
        with torch.no_grad():
            layer.weight.copy_(M.to_torch(tf_kernel.numpy(), M.Entry("k", "k", layout)))
            layer.affine.weight.zero_()  # style = 0 + 1
            return layer(x, torch.zeros(1, 4, dtype=torch.float64))

    inner = (..., slice(2, -2), slice(2, -2))
    torch.testing.assert_close(i2i_up("conv_up")[inner], reference[inner], atol=1e-6, rtol=0)
    assert (i2i_up("conv")[inner] - reference[inner]).abs().max() > 0.1


def test_renamed_and_missing_variables_stop_the_conversion_with_every_name(tmp_path):
    g, d, gs = tiny_models()

    def rename(g_vars, d_vars):
        g_vars["G_synthesis/G_8x8/Conv1/noise_strengthX"] = g_vars.pop(
            "G_synthesis/G_8x8/Conv1/noise_strength"
        )

    path = official_pickle(tmp_path / "renamed.pkl", g, d, gs, edit=rename)
    with pytest.raises(ConversionError) as err:
        C.convert_file(path)
    message = str(err.value)
    assert "1 unknown variable(s): G_synthesis/G_8x8/Conv1/noise_strengthX" in message
    assert "1 missing variable(s): G_synthesis/G_8x8/Conv1/noise_strength" in message
    assert str(path) in message

    def drop(g_vars, d_vars):
        del g_vars["G_synthesis/E_16x16/Conv0/bias"], g_vars["dlatent_avg"]
        del d_vars["16x16/Skip/weight"]

    path = official_pickle(tmp_path / "missing.pkl", g, d, gs, edit=drop)
    with pytest.raises(ConversionError) as err:
        C.convert_file(path)
    message = str(err.value)
    assert "2 missing variable(s): G_synthesis/E_16x16/Conv0/bias, dlatent_avg" in message

    def reshape(g_vars, d_vars):
        g_vars["G_synthesis/G_4x4/Conv/bias"] = np.zeros(7, np.float32)

    path = official_pickle(tmp_path / "shape.pkl", g, d, gs, edit=reshape)
    with pytest.raises(ConversionError, match=r"G_synthesis/G_4x4/Conv/bias \[7\] -> "):
        C.convert_file(path)


class RunsACommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_with_another_class_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(("weights", RunsACommand(marker)), protocol=3))
    with pytest.raises(pickle.UnpicklingError, match=r"evil\.pkl: .*(posix|os)\.system.*refus"):
        tf_pickle.load(path)
    assert not marker.exists()


def test_port_state_dict_converts_to_the_same_generator(tmp_path, one_torch_thread):
    g = randomized(CoModGenerator(RES, cond_channels=4, **TINY_G), 3)
    state = {f"module.{k}": v for k, v in port_state(g).items()}  # as saved from DataParallel
    name = "co-mod-gan-ffhq-9-025000_net_G_ema.pth"
    torch.save(state, tmp_path / name)
    out = C.convert_file(tmp_path / name)
    # exact but for the style biases, which go through + 1 and - 1 in float32
    assert_same_state(out.generator_ema, g, skip=("w_avg", "noise_const"), atol=1e-6)
    assert out.generator is None and out.discriminator is None
    assert any("E[4]" in note for note in out.notes)

    g2 = CoModGenerator(**out.generator_args).eval()
    g2.load_state_dict(out.generator_ema)
    # without what the port does not store (w_avg: no truncation; constant noise: none)
    torch.testing.assert_close(g_output(g2, "none", 1.0), g_output(g, "none", 1.0))
    # What the port does not store is made the same way every time; w_avg is the mean w.
    again = C.convert_file(tmp_path / name).generator_ema
    assert torch.equal(again["w_avg"], out.generator_ema["w_avg"])
    key = "decoder.conv4.noise_const"
    assert torch.equal(again[key], out.generator_ema[key])
    with torch.no_grad():
        other = g.mapping(torch.randn(20_000, g.z_dim, generator=torch.Generator().manual_seed(5)))
    spread = other.std(dim=0) / (C.W_AVG_SAMPLES**0.5)
    assert ((out.generator_ema["w_avg"] - other.mean(dim=0)).abs() < 6 * spread + 1e-6).all()
    # The port's style bias starts at 1 where i2i's starts at 0 (i2i adds the 1 at run time).
    key = "G_synthesis.G_4x4.Conv.conv.modulation.bias"
    torch.testing.assert_close(state[f"module.{key}"], g.decoder.conv4.affine.bias.detach() + 1)


def test_a_port_file_of_unknown_origin_is_refused_with_the_reason(tmp_path, one_torch_thread):
    g = CoModGenerator(RES, cond_channels=4, **TINY_G)
    torch.save(port_state(g), tmp_path / "my_training_best_net_G_ema.pth")
    with pytest.raises(ConversionError, match=r"E\[4\].*--from-official-tf"):
        C.convert_file(tmp_path / "my_training_best_net_G_ema.pth")
    out = C.convert_file(tmp_path / "my_training_best_net_G_ema.pth", from_official_tf=True)
    assert out.generator_args["img_resolution"] == RES


def test_architecture_inference_and_kinds():
    official_512 = {2: 512, 3: 512, 4: 512, 5: 512, 6: 512, 7: 256, 8: 128, 9: 64}
    assert C._channel_args(official_512, "f") == {"channel_base": 16384, "channel_max": 512}
    assert C._channel_args({2: 32, 3: 32, 4: 16, 5: 8}, "f") == {
        "channel_base": 128,
        "channel_max": 32,
    }
    with pytest.raises(ConversionError, match="do not follow"):
        C._channel_args({2: 32, 3: 16, 4: 16}, "f")
    assert C.kimg_from_name("co-mod-gan-places2-050000.pkl") == 50000.0
    assert C.kimg_from_name("co-mod-gan-ffhq-9-025000_net_G_ema.pth") == 25000.0

    edges = C.Converted({"cond_channels": 3}, {}, image_first=True)
    assert C.guess_kind(Path("co-mod-gan-edges2shoes-025000.pkl"), edges) == "edges"
    with pytest.raises(ConversionError, match="--kind edges or --kind labels"):
        C.guess_kind(Path("mine.pkl"), edges)
    with pytest.raises(ConversionError, match="colour-coded label map.*--kind edges"):
        C.task_args("labels", edges)
    with pytest.raises(ConversionError, match="4 condition channels"):
        C.task_args("inpainting", edges)


@pytest.mark.parametrize("mode", MODES)
def test_convert_command_writes_a_model_that_loads_and_matches(tmp_path, one_torch_thread, mode):
    g, d, gs = tiny_models()
    path = official_pickle(tmp_path / "co-mod-gan-tiny-025000.pkl", g, d, gs)
    args = ("convert", str(path), "--out", str(tmp_path / "model"), "--resolution", "32")
    code, text = run_i2i(mode, *args)
    assert code == 0, text
    assert "inpainting" in text
    # The model is readable as every other output (0666 less the umask), not 0600: shared on a
    # cluster, the group can read it.
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    for written in (tmp_path / "model.safetensors", tmp_path / "model.json"):
        assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)

    from i2i.inference.model import load_model, read_card

    card = read_card(tmp_path / "model")
    assert card["kind"] == "inpainting" and card["kimg"] == 25000.0
    assert card["task"]["class_path"] == "i2i.tasks.InpaintingTask"
    assert "co-mod-gan-tiny-025000.pkl" in card["source"]
    model = load_model(tmp_path / "model")

    torch.manual_seed(3)
    image = torch.rand(2, 3, RES, RES) * 2 - 1
    mask = torch.ones(2, 1, RES, RES)
    mask[:, :, 8:24, 4:20] = 0
    z = torch.randn(2, TINY_G["z_dim"])
    torch.manual_seed(4)
    got = model({"image": image, "mask": mask, "index": torch.arange(2)}, z)
    torch.manual_seed(4)
    with torch.no_grad():
        raw = gs(torch.cat([mask - 0.5, image * mask], dim=1), z, noise_mode="const")
    torch.testing.assert_close(got, raw * (1 - mask) + image * mask, atol=1e-6, rtol=0)


def test_convert_errors_exit_1_with_the_reason(tmp_path, capsys):
    g, d, gs = tiny_models()
    path = official_pickle(tmp_path / "co-mod-gan-tiny-025000.pkl", g, d, gs)
    assert C.main([str(path), "--out", str(tmp_path / "m"), "--resolution", "512"]) == 1
    assert "a 32x32 model, not 512" in capsys.readouterr().err
    assert C.main([str(tmp_path / "absent.pkl"), "--out", str(tmp_path / "m")]) == 1
    assert "absent.pkl: no such file" in capsys.readouterr().err
    assert C.main([str(path), "--out", str(tmp_path / "m"), "--kind", "edges"]) == 1
    assert "this file is an inpainting model" in capsys.readouterr().err
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(path.read_bytes()[:5000])
    assert C.main([str(truncated), "--out", str(tmp_path / "m")]) == 1
    assert "truncated.pkl: the pickle is damaged or ends early" in capsys.readouterr().err
    not_networks = tmp_path / "list.pkl"
    not_networks.write_bytes(pickle.dumps([1, 2]))
    assert C.main([str(not_networks), "--out", str(tmp_path / "m")]) == 1
    assert "expected the official (G, D, Gs) tuple of tflib networks, found list" in (
        capsys.readouterr().err
    )
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(RunsACommand(tmp_path / "ran"), protocol=3))
    assert C.main([str(evil), "--out", str(tmp_path / "m")]) == 1
    assert "refusing to load it (nothing was executed)" in capsys.readouterr().err
    assert not (tmp_path / "ran").exists() and not list(tmp_path.glob("m*"))


@pytest.mark.weights
def test_real_ffhq512_pickle(tmp_path, one_torch_thread):
    from i2i.weights.registry import weights_dir

    path = weights_dir() / "co-mod-gan-ffhq-9-025000.pkl"
    if not path.is_file():
        pytest.skip(f"the official FFHQ 512 pickle is not at {path} (i2i-weights --only comodgan)")
    out = C.convert_file(path)
    g = CoModGenerator(**out.generator_args).eval()
    g.load_state_dict(out.generator_ema)
    assert out.generator_args["img_resolution"] == 512
    assert sum(p.numel() for p in g.parameters()) == 79_792_231
    # The official demo's face and mask (512 px, white = known), as its run_generator.py uses.
    folder = shared_data("faces", "comodgan_example512")
    from PIL import Image

    image = torch.from_numpy(np.asarray(Image.open(folder / "example_image.jpg").convert("RGB")))
    image = image.permute(2, 0, 1)[None].float() / 127.5 - 1
    mask = torch.from_numpy(np.asarray(Image.open(folder / "example_mask.jpg").convert("L")) > 127)
    mask = mask[None, None].float()
    with torch.no_grad():
        raw = g(torch.cat([mask - 0.5, image * mask], 1), torch.randn(1, 512), noise_mode="const")
    assert raw.isfinite().all() and raw.abs().mean() < 1.5
    hole = (raw - image).abs()[mask.expand_as(image) == 0].mean()
    assert hole < 0.5, f"the completed hole is far from the face (mean |error| {hole:.3f})"
    completed = (raw * (1 - mask) + image * mask)[0].permute(1, 2, 0)
    picture = tmp_path / "ffhq512_completion.png"
    Image.fromarray(((completed + 1) * 127.5).round().clamp(0, 255).byte().numpy()).save(picture)
    print(f"completion of the official example: {picture}")
