"""The co-modulated generator and discriminator: architecture, gradients, latent-space behaviour."""

import pytest
import torch

from i2i.networks import CoModDiscriminator, CoModGenerator
from i2i.networks.layers import ModulatedConv2d
from i2i.networks.ops import memory_format, to_fast_layout
from i2i.networks.prefill import PrefilledCoModGenerator
from tests.conftest import TINY_D, TINY_G

SIZES = [32, (32, 64), (64, 32)]


def tiny_g(resolution=32, **kwargs):
    return CoModGenerator(resolution, cond_channels=4, **{**TINY_G, **kwargs})


def tiny_d(resolution=32, **kwargs):
    return CoModDiscriminator(resolution, cond_channels=1, **{**TINY_D, **kwargs})


def num_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "resolution,g_params,d_params",
    [
        (512, 79_792_231, 28_982_913),
        (256, 79_177_378, 28_864_257),
    ],
)
def test_official_parameter_counts(resolution, g_params, d_params):
    with torch.device("meta"):  # no memory, no init cost
        G = CoModGenerator(resolution, cond_channels=4)
        D = CoModDiscriminator(resolution, img_channels=3, cond_channels=1)
    assert num_params(G) == g_params
    assert num_params(D) == d_params
    if resolution == 512:
        assert num_params(G.mapping) == 2_101_248
        assert num_params(G.encoder) == 31_952_000
        assert num_params(G.decoder) == 45_738_983
    assert G.num_ws == {512: 16, 256: 14}[resolution]


def test_rectangular_bottleneck_and_layers():
    with torch.device("meta"):
        G = CoModGenerator((256, 512), cond_channels=36)
    assert G.num_ws == 14  # the depth of the 256 model
    assert G.decoder.fc.out_features == 512 * 4 * 8  # a 4x8 bottleneck
    assert G.encoder.fc.in_features == 512 * 4 * 8


@pytest.mark.parametrize("resolution", SIZES)
def test_shapes_dtypes_finite(resolution):
    G, D = tiny_g(resolution), tiny_d(resolution)
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    cond = torch.randn(3, 4, h, w)
    img = G(cond)
    assert img.shape == (3, 3, h, w) and img.dtype == torch.float32
    assert torch.isfinite(img).all()
    logits = D(img, cond[:, :1])
    assert logits.shape == (3,) and torch.isfinite(logits).all()


@pytest.mark.parametrize("modulation", ["co", "style", "cond"])
def test_every_generator_parameter_gets_a_gradient(modulation):
    G = tiny_g((32, 64), modulation=modulation)
    G(torch.randn(2, 4, 32, 64), style_mixing_prob=1.0).square().mean().backward()
    missing = [n for n, p in G.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reached {missing}"
    affine_inputs = {m.affine.in_features for m in G.modules() if isinstance(m, ModulatedConv2d)}
    assert affine_inputs == {{"co": 32 + 64, "style": 32, "cond": 64}[modulation]}
    assert (G.mapping is None) == (modulation == "cond")


def test_every_discriminator_parameter_gets_a_gradient():
    D = tiny_d((64, 32))
    D(torch.randn(4, 3, 64, 32), torch.randn(4, 1, 64, 32)).sum().backward()
    missing = [n for n, p in D.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reached {missing}"


def test_discriminator_sees_the_condition():
    D = tiny_d().eval()
    img = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(D(img, torch.zeros(2, 1, 32, 32)), D(img, torch.ones(2, 1, 32, 32)))
    with pytest.raises(ValueError, match="cond"):
        D(img)


def test_const_noise_is_deterministic_and_random_noise_is_not():
    G = tiny_g(dropout_at_inference=False).eval()
    with torch.no_grad():  # make the noise matter: strengths start at 0
        for m in G.modules():
            if isinstance(m, ModulatedConv2d) and m.use_noise:
                m.noise_strength.fill_(0.5)
    cond, z = torch.randn(2, 4, 32, 32), torch.randn(2, 32)
    a, b = G(cond, z, noise_mode="const"), G(cond, z, noise_mode="const")
    assert torch.equal(a, b)
    assert not torch.allclose(G(cond, z), G(cond, z))  # fresh noise every call
    assert torch.equal(G(cond, z, noise_mode="none"), G(cond, z, noise_mode="none"))
    assert not torch.allclose(G(cond, z, noise_mode="none"), a)


def test_official_dropout_stays_on_at_inference():
    G = tiny_g().eval()  # default as official: dropout on the global code at test time too
    cond, z = torch.randn(2, 4, 32, 32), torch.randn(2, 32)
    assert not torch.allclose(G(cond, z, noise_mode="const"), G(cond, z, noise_mode="const"))
    G.encoder.dropout_at_inference = False
    assert torch.equal(G(cond, z, noise_mode="const"), G(cond, z, noise_mode="const"))


def test_z_changes_the_output():
    G = tiny_g(dropout_at_inference=False).eval()
    cond = torch.randn(1, 4, 32, 32)
    out1 = G(cond, torch.randn(1, 32), noise_mode="const")
    out2 = G(cond, torch.randn(1, 32), noise_mode="const")
    assert (out1 - out2).abs().mean() > 1e-3


def test_truncation_psi_zero_gives_w_avg():
    G = tiny_g()
    G.w_avg.copy_(torch.randn(32))
    ws = G.map(torch.randn(5, 32), truncation_psi=0.0)
    torch.testing.assert_close(ws, G.w_avg.expand(5, G.num_ws, 32))
    half = G.map(z := torch.randn(5, 32), truncation_psi=0.5)
    full = G.map(z)
    torch.testing.assert_close(half, G.w_avg + 0.5 * (full - G.w_avg))
    cut = G.map(z, truncation_psi=0.0, truncation_cutoff=3)
    torch.testing.assert_close(cut[:, :3], G.w_avg.expand(5, 3, 32))
    torch.testing.assert_close(cut[:, 3:], full[:, 3:])


def test_w_avg_running_update():
    G = tiny_g()
    z = torch.randn(16, 32)
    w_mean = G.mapping(z).mean(dim=0)
    G.map(z, update_w_avg=True)
    torch.testing.assert_close(G.w_avg, (1 - 0.995) * w_mean)
    assert "w_avg" in G.state_dict()


def expected_w_index(name: str) -> int:
    """The spec's layer numbering, computed independently of the model's own bookkeeping."""
    if name.startswith("decoder.conv4"):
        return 0
    if name.startswith("decoder.to_rgb4"):
        return 1
    level = int(name.split(".")[2])  # decoder.blocks.<level>.<layer>
    return {"conv_up": 2 * level - 5, "conv": 2 * level - 4, "to_rgb": 2 * level - 3}[
        name.split(".")[3]
    ]


def test_each_layer_reads_its_own_w():
    G = tiny_g(64, dropout_at_inference=False)
    ws = torch.randn(2, G.num_ws, 32)  # a different w for every layer, as under style mixing
    seen = {}

    def record(name):
        return lambda module, inputs: seen.__setitem__(name, inputs[0][:, :32].detach().clone())

    layers = {n: m for n, m in G.named_modules() if isinstance(m, ModulatedConv2d)}
    assert len(layers) == 3 * 4 + 2  # 4x4 conv and ToRGB, then 3 layers per level 8..64
    for name, module in layers.items():
        module.affine.register_forward_pre_hook(record(name))
    G.synthesize(torch.randn(2, 4, 64, 64), ws)
    assert seen.keys() == layers.keys()
    for name, w_read in seen.items():
        assert torch.equal(w_read, ws[:, expected_w_index(name)]), f"{name} read the wrong w"
    assert sorted({expected_w_index(n) for n in layers}) == list(range(G.num_ws))


def test_style_mixing_crossover():
    ws, ws2 = torch.zeros(3, 8, 4), torch.ones(3, 8, 4)
    mixed = CoModGenerator.mix_styles(ws, ws2, torch.tensor([1, 5, 8]))
    assert mixed[0, :1].eq(0).all() and mixed[0, 1:].eq(1).all()
    assert mixed[1, :5].eq(0).all() and mixed[1, 5:].eq(1).all()
    assert mixed[2].eq(0).all()  # crossover = num_ws: no mixing
    G = tiny_g()
    always = G.map(torch.randn(4, 32), style_mixing_prob=1.0)
    assert not torch.allclose(always[:, 0], always[:, -1])  # the last layer reads a second w
    never = G.map(torch.randn(4, 32), style_mixing_prob=0.0)
    assert torch.equal(never[:, 0], never[:, -1])


@pytest.mark.parametrize("batch", [1, 3])
def test_modconv_paths_agree_in_the_generator(batch):
    G = tiny_g(dropout_at_inference=False).eval()
    cond, z = torch.randn(batch, 4, 32, 32), torch.randn(batch, 32)
    outs = []
    for impl in ("grouped", "shared"):
        for m in G.modules():
            if isinstance(m, ModulatedConv2d):
                m.impl = impl
        outs.append(G(cond, z, noise_mode="const"))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="power of two"):
        CoModGenerator(100)
    with pytest.raises(ValueError, match="4:1"):
        CoModDiscriminator((32, 256))
    with pytest.raises(ValueError, match="modulation"):
        CoModGenerator(32, modulation="both")
    with pytest.raises(ValueError, match="cond has shape"):
        tiny_g()(torch.randn(1, 3, 32, 32))


def test_bf16_autocast_runs_on_cpu():
    G, D = tiny_g(), tiny_d()
    cond = torch.randn(2, 4, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        img = G(cond)
        logits = D(img, cond[:, :1])
    assert img.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()


# ---- memory layout: the networks convert their own inputs -----------------------------------

CL = torch.channels_last


def record_layouts(convs):
    """Forward pre-hooks that record the memory format each conv's input arrives in."""
    seen = []
    for conv in convs:
        conv.register_forward_pre_hook(lambda module, args: seen.append(memory_format(args[0])))
    return seen


@pytest.mark.parametrize("network", ["comod", "prefilled"])
def test_generator_runs_an_nchw_condition_in_channels_last(network):
    if network == "comod":
        G = tiny_g(dropout_at_inference=False).eval()
    else:
        G = PrefilledCoModGenerator(32, cond_channels=4, dropout_at_inference=False, **TINY_G)
        G.eval()
    # An inner conv of the encoder and one of the decoder (which follows the encoder's layout).
    seen = record_layouts([G.encoder.blocks["4"]["conv"], G.decoder.blocks["4"]["conv"]])
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(2, 4, 32, 32, generator=g)
    z = torch.randn(2, G.z_dim, generator=g)
    assert memory_format(cond) == torch.contiguous_format
    plain = G(cond, z, noise_mode="const")
    assert seen == [CL, CL]
    converted = G(cond.contiguous(memory_format=CL), z, noise_mode="const")
    if network == "comod":  # past the conversion both calls compute the same thing
        assert torch.equal(plain, converted)
    else:  # the prefill runs in the caller's layout, before the encoder converts
        torch.testing.assert_close(plain, converted, rtol=1e-6, atol=1e-6)


def test_discriminator_runs_nchw_and_concatenated_inputs_in_channels_last():
    D = tiny_d().eval()
    seen = record_layouts([D.blocks[0].conv0])
    g = torch.Generator().manual_seed(0)
    image, cond = torch.randn(2, 3, 32, 32, generator=g), torch.randn(2, 1, 32, 32, generator=g)
    plain = D(image, cond)
    # The tasks' batches: a channels_last image beside a 1-channel mask, which torch.cat would
    # lay out NCHW.
    converted = D(image.contiguous(memory_format=CL), cond.contiguous(memory_format=CL))
    assert seen == [CL, CL]
    assert torch.equal(plain, converted)


def test_generator_runs_a_one_channel_condition_in_channels_last():
    # An edge map is contiguous in both layouts; the conv reading it must still answer in CL.
    G = CoModGenerator(32, cond_channels=1, dropout_at_inference=False, **TINY_G).eval()
    seen = record_layouts([G.encoder.blocks["4"]["conv"]])
    edges = torch.randn(2, 1, 32, 32)
    plain = G(edges, torch.zeros(2, G.z_dim), noise_mode="const")
    assert seen == [CL]
    converted = G(edges.contiguous(memory_format=CL), torch.zeros(2, G.z_dim), noise_mode="const")
    assert torch.equal(plain, converted)


def test_to_fast_layout_converts_on_cpu_only_and_never_copies_twice():
    x = torch.randn(2, 4, 8, 8)
    y = to_fast_layout(x)
    assert memory_format(y) == CL and torch.equal(x, y)
    assert to_fast_layout(y) is y  # a tensor already in the layout: no copy
    one_channel = to_fast_layout(torch.randn(2, 1, 8, 8))
    assert one_channel.stride() == (64, 1, 8, 1)  # channels_last strides, which convs follow
    assert to_fast_layout(one_channel) is one_channel
    elsewhere = torch.empty(2, 4, 8, 8, device="meta")
    assert to_fast_layout(elsewhere) is elsewhere  # other devices keep the caller's layout
