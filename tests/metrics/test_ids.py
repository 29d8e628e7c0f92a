"""InceptionDiscriminativeScore: scores, misuse, state handling, the offline Inception, and DDP."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from i2i.io import sha256_of
from i2i.metrics import InceptionDiscriminativeScore, discriminative_scores, frechet_distance
from i2i.metrics import features as feats
from tests.helpers import fork_gloo_ranks
from tests.metrics.ddp_ids import N_PAIRS, PooledProjection, make_pairs, score_share


def _scores(metric: InceptionDiscriminativeScore, real, fake, batch: int = 100) -> dict:
    for i in range(0, real.shape[0], batch):
        metric.update(real[i : i + batch], fake[i : i + batch])
    return {k: float(v) for k, v in metric.compute().items()}


def test_one_distribution_scores_near_half() -> None:
    real, _ = make_pairs(600, seed=1)
    fake, _ = make_pairs(600, seed=2)  # independent draws of the same distribution
    out = _scores(InceptionDiscriminativeScore(PooledProjection()), real, fake)
    assert abs(out["u_ids"] - 0.5) < 0.1
    assert abs(out["p_ids"] - 0.5) < 0.1


def test_separable_scores_near_zero() -> None:
    real, fake = make_pairs(300, shift=0.6, noise=0.05)
    out = _scores(InceptionDiscriminativeScore(PooledProjection()), real, fake)
    assert out["u_ids"] < 0.05
    assert out["p_ids"] < 0.05


def test_shuffling_fakes_changes_p_ids_only() -> None:
    real, fake = make_pairs(400, shift=0.1, noise=0.3)
    paired = _scores(InceptionDiscriminativeScore(PooledProjection()), real, fake)
    perm = torch.randperm(400, generator=torch.Generator().manual_seed(0))
    shuffled = _scores(InceptionDiscriminativeScore(PooledProjection()), real, fake[perm])
    assert shuffled["u_ids"] == paired["u_ids"]  # the SVM sees the same set of vectors
    assert abs(shuffled["p_ids"] - paired["p_ids"]) > 0.05  # the pairing matters for P-IDS
    assert 0.05 < paired["p_ids"] < 0.45 and 0.05 < paired["u_ids"] < 0.45


def test_scores_follow_their_definition() -> None:
    real, fake = make_pairs(200, shift=0.1, noise=0.3)
    metric = InceptionDiscriminativeScore(PooledProjection())
    metric.update(real, fake)
    out = metric.compute()
    f_real, f_fake = PooledProjection()(real).detach(), PooledProjection()(fake).detach()
    x = torch.cat([f_real, f_fake]).double()
    from sklearn.svm import LinearSVC

    ref = LinearSVC(dual=False).fit(x.numpy(), np.r_[np.ones(200), np.zeros(200)])
    dec = ref.decision_function(x.numpy())
    u_ref = (np.sum(dec[:200] <= 0) + np.sum(dec[200:] > 0)) / 400
    p_ref = np.mean(dec[200:] > dec[:200])
    assert float(out["u_ids"]) == pytest.approx(u_ref, abs=0.005)
    assert float(out["p_ids"]) == pytest.approx(p_ref, abs=0.005)


def test_misuse_fails_loudly() -> None:
    metric = InceptionDiscriminativeScore(PooledProjection())
    x = torch.zeros(4, 3, 8, 8)
    with pytest.raises(ValueError, match=r"batch sizes differ.*\(4, 3, 8, 8\).*\(3, 3, 8, 8\)"):
        metric.update(x, x[:3])
    with pytest.raises(ValueError, match=r"shapes differ.*\(4, 3, 8, 8\).*\(4, 3, 8, 9\)"):
        metric.update(x, torch.zeros(4, 3, 8, 9))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*\(3, 8, 8\)"):
        metric.update(x[0], x[0])
    with pytest.raises(RuntimeError, match="no samples"):
        metric.compute()
    with pytest.raises(TypeError):
        InceptionDiscriminativeScore("2048")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2048"):
        InceptionDiscriminativeScore(768)


def test_unequal_counts_and_few_samples() -> None:
    real, fake = make_pairs(16)
    metric = InceptionDiscriminativeScore(PooledProjection(num_features=32))
    metric.update(real, fake)
    with pytest.warns(UserWarning, match="only 16 pairs for 32-d features"):
        out = metric.compute()
    assert set(out) == {"p_ids", "u_ids"}
    broken = InceptionDiscriminativeScore(PooledProjection())
    broken.update(real, fake)
    broken.real_features.append(broken.real_features[0][:3])  # states tampered with
    with pytest.raises(RuntimeError, match="19 real but 16 fake"):
        broken.compute()


def test_feature_network_kept_out_of_state_and_features_on_cpu() -> None:
    net = PooledProjection().double()
    metric = InceptionDiscriminativeScore(net)
    assert list(metric.parameters()) == []
    assert list(metric.children()) == []
    assert metric.state_dict() == {}
    assert metric.feature_extractor is net and not net.training
    assert not any(p.requires_grad for p in net.parameters())
    net.train()  # someone flips it: updates still run it in eval mode
    real, fake = make_pairs(8)
    metric.update(real.double(), fake.double())
    assert not net.training
    for state in (metric.real_features, metric.fake_features):
        assert state[0].dtype == torch.float32 and state[0].device.type == "cpu"
    # forward only accumulates (scores of one batch are meaningless)
    assert metric(real.double(), fake.double()) is None
    assert sum(len(t) for t in metric.real_features) == 16
    # .to(device) moves the network with the metric (the meta device stands in for a GPU here);
    # its dtype is untouched and the features stay on the CPU.
    metric.to("meta")
    assert next(net.parameters()).device.type == "meta"
    assert next(net.parameters()).dtype == torch.float64
    assert metric.real_features[0].device.type == "cpu"


def test_fid_matches_torchmetrics_math() -> None:
    from torchmetrics.image.fid import _compute_fid

    real, fake = make_pairs(300, shift=0.1, noise=0.3)
    metric = InceptionDiscriminativeScore(PooledProjection(), compute_fid=True)
    metric.update(real, fake)
    out = metric.compute()
    f_real = torch.cat(metric.real_features).double()
    f_fake = torch.cat(metric.fake_features).double()
    ref = _compute_fid(f_real.mean(0), f_real.T.cov(), f_fake.mean(0), f_fake.T.cov())
    assert float(out["fid"]) == pytest.approx(float(ref), rel=1e-5)
    assert float(ref) > 0.01
    assert float(frechet_distance(f_real, f_real)) == pytest.approx(0.0, abs=1e-9)


def test_quantize_images_formula() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(10_000, generator=g) * 0.7, torch.tensor([-1.0, 1.0, 0.0, -3, 3])])
    for dtype in (torch.float32, torch.float64):
        xd = x.to(dtype)
        q = feats.quantize_images(xd)
        assert q.dtype == torch.uint8
        # The official TensorFlow formula, computed independently in NumPy.
        ref = np.clip(np.floor(xd.numpy() * 127.5 + 128), 0, 255).astype(np.uint8)
        assert np.array_equal(q.numpy(), ref)
    assert feats.quantize_images(torch.tensor([-1.0, 1.0, -5.0, 5.0])).tolist() == [0, 255, 0, 255]
    # Exact halves k + 0.5 go UP (TF's floor(x + 0.5)), where round-half-to-even would give
    # 128, 0, 2, 254: the two rules differ on every even k.
    halves = torch.tensor([127.5, 0.5, 1.5, 254.5, 2.5], dtype=torch.float64)
    xs = (halves - 127.5) / 127.5
    assert torch.equal(xs * 127.5 + 127.5, halves)  # these inputs hit the halves exactly
    assert feats.quantize_images(xs).tolist() == [128, 1, 2, 255, 3]
    assert torch.round(halves).tolist() == [128, 0, 2, 254, 2]  # what the old rule gave
    with pytest.raises(ValueError, match="float"):
        feats.quantize_images(torch.zeros(3, dtype=torch.uint8))


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torch-fidelity's architecture with random weights, saved under the official file name."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("inception")
    torch.save(feats.build_inception().state_dict(), folder / feats.INCEPTION_FILENAME)
    return folder / feats.INCEPTION_FILENAME


def test_inception_loader_hash_check(random_inception: Path) -> None:
    with pytest.raises(
        ValueError,
        match=r"(?s)weights-inception-2015-12-05-6726825d\.pth.*"
        r"expected '6726825d'",
    ) as err:
        feats.inception_feature_extractor(random_inception)
    found = sha256_of(random_inception)[:8]
    assert found in str(err.value)
    # A folder holding the official name works as well as the file itself.
    net = feats.inception_feature_extractor(random_inception.parent, check_hash=False)
    assert net.num_features == 2048 and not net.training


def test_inception_metric_matches_torch_fidelity(random_inception: Path) -> None:
    real, fake = make_pairs(2, size=64)
    metric = InceptionDiscriminativeScore(weights_path=str(random_inception), check_hash=False)
    metric.update(real, fake)
    with pytest.warns(UserWarning, match="only 2 pairs for 2048-d"):
        out = metric.compute()
    assert 0.0 <= float(out["p_ids"]) <= 1.0 and 0.0 <= float(out["u_ids"]) <= 1.0
    # The stored features are torch-fidelity's own network, fed the uint8-quantised images.
    reference = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(random_inception)
    )
    with torch.no_grad():
        expected = reference(feats.quantize_images(fake))[0]
    torch.testing.assert_close(metric.fake_features[0], expected, rtol=1e-4, atol=1e-5)
    assert metric.fake_features[0].shape == (2, 2048)
    with pytest.raises(ValueError, match=r"RGB.*\(2, 1, 64, 64\)"):
        metric.update(real[:, :1], fake[:, :1])


def test_missing_weights_error_names_file_url_and_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        InceptionDiscriminativeScore()
    message = str(err.value)
    assert feats.INCEPTION_FILENAME in message
    assert feats.INCEPTION_URL in message
    assert str(tmp_path / "hub" / "checkpoints") in message


def test_download_offline_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(RuntimeError) as err:
        feats.download_inception_weights(tmp_path)
    assert feats.INCEPTION_URL in str(err.value)
    assert str(tmp_path / feats.INCEPTION_FILENAME) in str(err.value)


def test_ddp_two_processes_match_one(tmp_path: Path) -> None:
    fork_gloo_ranks(score_share, str(tmp_path))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]

    real, fake = make_pairs()
    single = InceptionDiscriminativeScore(PooledProjection(), compute_fid=True)
    single.update(real, fake)
    expected = {k: float(v) for k, v in single.compute().items()}
    for result in ranks:
        assert result["scores"]["p_ids"] == expected["p_ids"]
        assert result["scores"]["u_ids"] == expected["u_ids"]
        assert result["scores"]["fid"] == pytest.approx(expected["fid"], rel=1e-5)
        assert result["warnings"] == []
        # Gathered features: all pairs, in order, real_i still next to fake_i.
        g_real, g_fake = torch.tensor(result["real"]), torch.tensor(result["fake"])
        assert g_real.shape == (N_PAIRS, 8)
        torch.testing.assert_close(g_real, torch.cat(single.real_features))
        torch.testing.assert_close(g_fake, torch.cat(single.fake_features))
        direct = discriminative_scores(g_real, g_fake)
        assert result["scores"]["p_ids"] == float(direct["p_ids"])
    assert [r["local_pairs"] for r in ranks] == [28, 36]
