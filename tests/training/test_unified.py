"""`classemo.training.unified.train_step` on its own: one step on a tiny model, its losses, its precision paths."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from classemo.losses.unified import UnifiedLoss
from classemo.models import create_model
from classemo.training.unified import UnifiedStep, train_step

B, T, S, C = 3, 2, 32, 4


def _tiny() -> UnifiedStep:
    torch.manual_seed(0)
    return UnifiedStep(create_model("classemo_tiny", num_classes=C, image_size=S, num_frames=T, embed_dim=32, depth=1,
                                    num_heads=2, num_clusters=4, temporal_depth=1, temporal_heads=2))


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 1] = False  # one padded frame: it must not count
    va = torch.rand(B, 2, generator=g) * 2 - 1
    va[2] = float("nan")  # a clip without V/A
    return {"frames": torch.randn(B, T, 3, S, S, generator=g), "mask": mask,
            "label": torch.tensor([0, 2, 3]), "va": va, "peak": torch.randn(B, 3, S, S, generator=g)}


def _loss() -> UnifiedLoss:
    return UnifiedLoss(eta1=0.3, eta2=0.7, lambda_t=1.0, lambda_va=0.5)


def test_one_step_changes_the_weights_and_returns_the_loss_parts() -> None:
    step_model, loss_fn, batch = _tiny(), _loss(), _batch()
    before = copy.deepcopy(step_model.state_dict())
    # The same forward, once without stepping: the returned numbers must be these losses, term by term.
    reference = copy.deepcopy(step_model).train()
    torch.manual_seed(2)
    out = reference(batch["frames"], batch["mask"], batch["peak"])
    want = loss_fn(out, {"label": batch["label"], "va": batch["va"], "mask": batch["mask"]},
                   peak_logits=out["peak_logits"], peak_targets=batch["label"])

    optimizer = torch.optim.AdamW(step_model.parameters(), lr=1e-3)
    torch.manual_seed(2)
    losses = train_step(step_model, loss_fn, optimizer, batch, grad_clip=1.0, bf16=False)

    assert set(losses) == {"total", "m_h", "m_b", "m_y", "temporal", "va"}
    assert all(math.isfinite(v) for v in losses.values()), losses
    for k, v in want.items():
        assert losses[k] == pytest.approx(float(v.detach()), rel=1e-5, abs=1e-6), k
    assert losses["total"] == pytest.approx(losses["m_h"] + 0.3 * losses["m_b"] + 0.7 * losses["m_y"]
                                            + losses["temporal"] + 0.5 * losses["va"], rel=1e-5)
    changed = [k for k, v in step_model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert changed, "no weight moved"
    heads = [k for k in changed if "head" in k]
    assert heads, f"the classifier heads did not move: {changed[:5]}"


def test_a_given_peak_batch_feeds_m_h() -> None:
    step_model, loss_fn, batch = _tiny(), _loss(), _batch()
    optimizer = torch.optim.SGD(step_model.parameters(), lr=0.0)  # lr 0: both calls see the same weights
    torch.manual_seed(3)
    own = train_step(step_model, loss_fn, optimizer, batch, bf16=False)
    peaks = torch.cat([batch["peak"], batch["peak"][:1]])  # a mixed batch of another size, other targets
    torch.manual_seed(3)
    mixed = train_step(step_model, loss_fn, optimizer, batch, peak_batch=(peaks, torch.tensor([1, 1, 1, 1])),
                       bf16=False)
    assert mixed["m_b"] == pytest.approx(own["m_b"]) and mixed["m_h"] != pytest.approx(own["m_h"])


def test_bf16_is_a_gpu_path_only() -> None:
    """On CPU `bf16=True` trains in full precision: the step is exactly the fp32 one (no loss scaler exists: bf16
    needs none)."""
    results = []
    for bf16 in (True, False):
        step_model = _tiny()
        optimizer = torch.optim.AdamW(step_model.parameters(), lr=1e-3)
        torch.manual_seed(4)
        losses = train_step(step_model, _loss(), optimizer, _batch(), bf16=bf16)
        results.append((losses, step_model.state_dict()))
    (a, wa), (b, wb) = results
    assert a == b
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 autocast runs on CUDA only")
def test_bf16_step_on_gpu_keeps_fp32_weights_and_finite_losses() -> None:
    step_model = _tiny().cuda()
    batch = {k: v.cuda() for k, v in _batch().items()}
    optimizer = torch.optim.AdamW(step_model.parameters(), lr=1e-3)
    losses = train_step(step_model, _loss().cuda(), optimizer, batch, bf16=True)
    assert all(math.isfinite(v) for v in losses.values()), losses
    assert all(p.dtype == torch.float32 for p in step_model.parameters())


def test_stills_read_m_h_from_the_clip_pass_and_soft_labels_reach_the_loss() -> None:
    """A 1-frame clip is its own peak frame: M_H is the peak head's CE on the clip pass (no second spatial pass), so it
    equals a separate `forward_peak` on the same frame; soft labels change the CE terms."""
    step_model, loss_fn, batch = _tiny(), _loss(), _batch()
    step_model.eval()  # no dropout/BN noise: the two paths must agree exactly
    stills = {**batch, "frames": batch["frames"][:, :1], "mask": batch["mask"][:, :1]}
    out = step_model(stills["frames"], stills["mask"])
    separate = step_model.model.forward_peak(stills["frames"][:, 0])
    torch.testing.assert_close(out["peak_logits"], separate, rtol=1e-4, atol=1e-5)
    assert "peak_logits" in step_model(batch["frames"], batch["mask"], batch["peak"])
    assert step_model(batch["frames"], batch["mask"])["peak_logits"] is None  # clips of 2 frames need their peaks

    optimizer = torch.optim.SGD(step_model.parameters(), lr=0.0)
    calls: list[int] = []
    forward_peak = step_model.model.forward_peak
    step_model.model.forward_peak = lambda images: calls.append(len(images)) or forward_peak(images)
    torch.manual_seed(4)
    hard = train_step(step_model, loss_fn, optimizer, stills, bf16=False)
    assert not calls and hard["m_h"] > 0  # M_H is there, without a second pass
    votes = torch.tensor([[0.5, 0.5, 0, 0], [float("nan")] * 4, [0, 0, 0.25, 0.75]])
    torch.manual_seed(4)
    soft = train_step(step_model, loss_fn, optimizer, {**stills, "soft": votes}, bf16=False)
    assert soft["temporal"] != pytest.approx(hard["temporal"]) and soft["m_h"] != pytest.approx(hard["m_h"])
