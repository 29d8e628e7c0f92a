"""pix2pix, CycleGAN and GLCIC networks: the official sizes, gradients, and their key behaviour."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from i2i.networks import (
    CompletionNetwork,
    ContextDiscriminator,
    PatchDiscriminator,
    ResnetGenerator,
    UNetGenerator,
)
from i2i.networks.glcic import crop_boxes, hole_centred_boxes


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_official_parameter_counts():
    assert count(UNetGenerator()) == 54_413_955  # unet_256, ngf 64, BatchNorm
    assert count(PatchDiscriminator()) == 2_768_705  # 70x70, ndf 64, BatchNorm, 6 channels
    assert count(ResnetGenerator()) == 11_378_179  # resnet_9blocks, InstanceNorm
    assert count(PatchDiscriminator(in_channels=3, norm="instance")) == 2_764_737


def _all_parameters_get_gradients(module: nn.Module, loss: torch.Tensor) -> None:
    loss.backward()
    missing = [n for n, p in module.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, missing


def test_unet_shapes_skips_and_gradients():
    G = UNetGenerator(in_channels=1, out_channels=3, ngf=8, num_downs=6)
    out = G(torch.randn(2, 1, 64, 64))
    assert out.shape == (2, 3, 64, 64) and out.abs().max() <= 1
    _all_parameters_get_gradients(G, out.square().mean())
    drops = [m for m in G.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 6 - 5  # the 8 x ngf blocks after the innermost one
    assert len([m for m in UNetGenerator().modules() if isinstance(m, nn.Dropout)]) == 3


@pytest.mark.parametrize("at_inference", [True, False])
def test_unet_dropout_at_inference(at_inference):
    G = UNetGenerator(ngf=8, num_downs=6, dropout_at_inference=at_inference).eval()
    x = torch.randn(1, 3, 64, 64)
    differs = not torch.equal(G(x), G(x))
    assert differs is at_inference  # pix2pix's noise stays on at test time by default


def test_patchgan_receptive_field_is_70():
    D = PatchDiscriminator(in_channels=3, ndf=8, norm="none")
    x = torch.randn(1, 3, 128, 128, requires_grad=True)
    out = D(x)
    assert out.shape == (1, 1, 14, 14)
    out[0, 0, 7, 7].backward()
    rows = x.grad.abs().sum(dim=(0, 1, 3)).nonzero()
    cols = x.grad.abs().sum(dim=(0, 1, 2)).nonzero()
    assert int(rows.max() - rows.min() + 1) == 70 and int(cols.max() - cols.min() + 1) == 70


def test_patchgan_reads_condition_and_image_and_names_wrong_channels():
    D = PatchDiscriminator(in_channels=6, ndf=8)
    out = D(torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 1, 6, 6)
    _all_parameters_get_gradients(D, out.mean())
    with pytest.raises(ValueError, match="expects 6 input channels"):
        D(torch.randn(2, 3, 64, 64))


def test_resnet_generator_shapes_and_gradients():
    G = ResnetGenerator(ngf=8, n_blocks=2)
    out = G(torch.randn(2, 3, 32, 48))
    assert out.shape == (2, 3, 32, 48) and out.abs().max() <= 1
    _all_parameters_get_gradients(G, out.square().mean())
    assert sum(type(m).__name__ == "ResnetBlock" for m in ResnetGenerator().modules()) == 9


def test_completion_network_resolution_and_dilations():
    C = CompletionNetwork(width=8)
    out = C(torch.randn(2, 4, 32, 32))
    assert out.shape == (2, 3, 32, 32)
    _all_parameters_get_gradients(C, out.square().mean())
    dilations = [m.dilation[0] for m in C.modules() if isinstance(m, nn.Conv2d)]
    assert [d for d in dilations if d > 1] == [2, 4, 8, 16]
    strided = [m for m in C.modules() if isinstance(m, nn.Conv2d) and m.stride[0] == 2]
    assert len(strided) == 2  # down to 1/4 resolution, and two deconvolutions back
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in C.modules()) == 2


def test_context_discriminator_concatenates_1024_features_and_gets_gradients():
    D = ContextDiscriminator(img_resolution=64, local_size=32, global_convs=4, local_convs=3)
    assert D.out.in_features == 2 * 1024
    logits = D(torch.randn(3, 3, 64, 64), torch.randn(3, 3, 32, 32))
    assert logits.shape == (3,)
    _all_parameters_get_gradients(D, logits.sum())
    with pytest.raises(ValueError, match="local branch"):
        D(torch.randn(3, 3, 64, 64), torch.randn(3, 3, 16, 16))


def test_the_local_patch_contains_the_hole():
    mask = torch.ones(3, 1, 64, 64)
    mask[0, :, 5:20, 40:60] = 0  # near the top-right corner: the box is shifted inside
    mask[1, :, 30:34, 30:34] = 0  # small, central
    boxes = hole_centred_boxes(mask, (32, 32))
    patches = crop_boxes(mask, boxes)
    for i in range(2):
        top, left, h, w = boxes[i]
        assert 0 <= top <= 64 - h and 0 <= left <= 64 - w
        hole_total = (mask[i] < 0.5).sum()
        assert (patches[i] < 0.5).sum() == hole_total  # the whole hole is in the patch
    assert boxes[2] == (16, 16, 32, 32)  # no hole: the centre
