"""The unified loss: each term, its weight, masking of padded frames and of missing V/A."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from classemo.losses import (
    UnifiedLoss,
    ccc_loss,
    class_weights_from_counts,
    label_counts,
    masked_va_loss,
    unified_loss,
)

B, T, C = 4, 5, 3
WEIGHTS = dict(eta1=0.5, eta2=0.25, lambda_t=1.0, lambda_va=2.0)


def _outputs(seed: int = 0, vlad: bool = True) -> dict[str, torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    return {
        "logits": torch.randn(B, C, generator=g).requires_grad_(),
        "va": torch.rand(B, 2, generator=g).mul(2).sub(1).requires_grad_(),
        "frame_logits": torch.randn(B, T, C, generator=g).requires_grad_(),
        "vit_logits": torch.randn(B, T, C, generator=g).requires_grad_(),
        "vlad_logits": torch.randn(B, T, C, generator=g).requires_grad_() if vlad else None,
    }


def _targets() -> dict[str, torch.Tensor]:
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    va = torch.tensor([[0.5, -0.2], [float("nan"), float("nan")], [-0.7, 0.1], [0.3, float("nan")]])
    return {"label": torch.tensor([0, 2, 1, 2]), "va": va, "mask": mask}


def _peak() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(6, C, generator=torch.Generator().manual_seed(9)).requires_grad_(), torch.tensor(
        [0, 1, 2, 0, 1, 2]
    )


def test_terms_are_finite_and_match_hand_computation() -> None:
    out, tgt = _outputs(), _targets()
    peak, peak_y = _peak()
    losses = unified_loss(out, tgt, **WEIGHTS, peak_logits=peak, peak_targets=peak_y)
    assert set(losses) == {"total", "m_h", "m_b", "m_y", "temporal", "va"}
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())

    real = [(b, t) for b in range(B) for t in range(T) if tgt["mask"][b, t]]
    vit = torch.stack([out["vit_logits"][b, t] for b, t in real])
    frame_y = torch.stack([tgt["label"][b] for b, _ in real])
    present = ~torch.isnan(tgt["va"])
    expected = {
        "m_h": F.cross_entropy(peak, peak_y),
        "m_b": F.cross_entropy(vit, frame_y),
        "m_y": F.cross_entropy(torch.stack([out["vlad_logits"][b, t] for b, t in real]), frame_y),
        "temporal": F.cross_entropy(out["logits"], tgt["label"]),
        "va": ((out["va"] - tgt["va"].nan_to_num()) ** 2)[present].mean(),
    }
    for k, v in expected.items():
        assert torch.allclose(losses[k], v), k
    total = expected["m_h"] + 0.5 * expected["m_b"] + 0.25 * expected["m_y"] + expected["temporal"] + 2 * expected["va"]
    assert torch.allclose(losses["total"], total)


@pytest.mark.parametrize(("weight", "term", "output"), [
    ("eta1", "m_b", "vit_logits"),
    ("eta2", "m_y", "vlad_logits"),
    ("lambda_t", "temporal", "logits"),
    ("lambda_va", "va", "va"),
])
def test_each_term_responds_to_its_weight(weight: str, term: str, output: str) -> None:
    tgt = _targets()
    base = unified_loss(_outputs(), tgt, **WEIGHTS)
    doubled = unified_loss(_outputs(), tgt, **{**WEIGHTS, weight: 2 * WEIGHTS[weight]})
    assert torch.allclose(doubled["total"] - base["total"], WEIGHTS[weight] * base[term])

    # With its weight at 0, the term's head gets no gradient; with a positive weight it does.
    for w, expect_grad in ((0.0, False), (1.0, True)):
        out = _outputs()
        unified_loss(out, tgt, **{**WEIGHTS, weight: w})["total"].backward()
        assert (out[output].grad.abs().sum() > 0) == expect_grad


def test_m_h_uses_the_peak_batch_and_is_zero_without_it() -> None:
    tgt = _targets()
    assert unified_loss(_outputs(), tgt, **WEIGHTS)["m_h"] == 0
    peak, peak_y = _peak()
    losses = unified_loss(_outputs(), tgt, **WEIGHTS, peak_logits=peak, peak_targets=peak_y)
    losses["total"].backward()
    assert losses["m_h"] > 0 and peak.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="peak_targets"):
        unified_loss(_outputs(), tgt, **WEIGHTS, peak_logits=peak)


def test_target_shapes_are_checked() -> None:
    tgt = _targets()
    with pytest.raises(ValueError, match=r"targets\['label'\] must have shape \(4,\)"):
        unified_loss(_outputs(), {**tgt, "label": tgt["label"][:2]}, **WEIGHTS)
    with pytest.raises(ValueError, match=r"targets\['mask'\] must have shape \(4, 5\)"):
        unified_loss(_outputs(), {**tgt, "mask": tgt["mask"][:, :3]}, **WEIGHTS)
    with pytest.raises(ValueError, match=r"targets\['va'\] must have shape \(4, 2\)"):
        unified_loss(_outputs(), {**tgt, "va": tgt["va"][:, 0]}, **WEIGHTS)


def test_m_y_is_zero_without_netvlad() -> None:
    losses = unified_loss(_outputs(vlad=False), _targets(), **WEIGHTS)
    assert losses["m_y"] == 0 and torch.isfinite(losses["total"])


def test_padded_frames_and_missing_va_are_ignored() -> None:
    tgt = _targets()
    a, b = _outputs(), _outputs()
    with torch.no_grad():
        b["vit_logits"][~tgt["mask"]] = 100.0
        b["vlad_logits"][~tgt["mask"]] = -100.0
        b["va"][torch.isnan(tgt["va"])] = 0.99
    la, lb = unified_loss(a, tgt, **WEIGHTS), unified_loss(b, tgt, **WEIGHTS)
    for k in ("m_b", "m_y", "va", "total"):
        assert torch.allclose(la[k], lb[k]), k
    # Without a mask every frame counts, so the padded garbage shows.
    no_mask = {k: v for k, v in tgt.items() if k != "mask"}
    assert not torch.allclose(unified_loss(b, no_mask, **WEIGHTS)["m_b"], lb["m_b"])


@pytest.mark.parametrize("kind", ["mse", "ccc"])
def test_va_loss_all_missing_is_zero_with_gradient_path(kind: str) -> None:
    pred = torch.zeros(3, 2, requires_grad=True)
    loss = masked_va_loss(pred, torch.full((3, 2), float("nan")), kind)
    assert loss == 0
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros(3, 2))


def test_ccc_loss_matches_hand_computation_and_mode() -> None:
    x = torch.tensor([0.1, 0.4, -0.3, 0.8])
    y = torch.tensor([0.0, 0.5, -0.1, 0.6])
    mx, my = 0.25, 0.25
    vx = sum((v - mx) ** 2 for v in x.tolist()) / 3
    vy = sum((v - my) ** 2 for v in y.tolist()) / 3
    cov = sum((a - mx) * (b - my) for a, b in zip(x.tolist(), y.tolist())) / 3
    assert math.isclose(ccc_loss(x, y).item(), 1 - 2 * cov / (vx + vy), rel_tol=1e-5)
    assert ccc_loss(y, y).item() == pytest.approx(0.0, abs=1e-6)

    pred, target = torch.stack([x, y], 1), torch.stack([y, x], 1)
    target[0, 1] = float("nan")
    expected = (ccc_loss(x, y) + ccc_loss(y[1:], x[1:])) / 2
    assert torch.allclose(masked_va_loss(pred, target, "ccc"), expected)
    # A dimension with one present value falls back to the squared error.
    one = torch.tensor([[0.2, float("nan")], [float("nan"), float("nan")]])
    assert torch.allclose(masked_va_loss(torch.zeros(2, 2), one, "ccc"), torch.tensor(0.04))
    with pytest.raises(ValueError, match="'mse' or 'ccc'"):
        masked_va_loss(pred, target, "mae")  # type: ignore[arg-type]


def test_class_weights_and_label_smoothing() -> None:
    counts = label_counts([0, 1, 1, 1, 2, 2], 4)
    assert counts.tolist() == [1, 3, 2, 0]
    w = class_weights_from_counts(counts)
    assert torch.allclose(w, torch.tensor([1, 1 / 3, 1 / 2, 1]) * 2)
    assert torch.allclose(class_weights_from_counts([2, 4, 2]), torch.tensor([8 / 6, 8 / 12, 8 / 6]))
    # Mean weight per sample is 1: weighted CE keeps the unweighted scale.
    assert torch.isclose((w * counts).sum() / counts.sum(), torch.tensor(1.0))
    # A power below 1 tempers the weights: inverse square root, still averaging 1 per sample; 0 is unweighted.
    root = class_weights_from_counts(counts, power=0.5)
    assert torch.allclose(root / root[0], torch.tensor([1, 3 ** -0.5, 2 ** -0.5, 1]))
    assert torch.isclose((root * counts).sum() / counts.sum(), torch.tensor(1.0))
    assert torch.allclose(class_weights_from_counts(counts, power=0.0), torch.ones(4))
    with pytest.raises(ValueError, match="power"):
        class_weights_from_counts(counts, power=2.0)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        label_counts([0, 4], 4)

    tgt = _targets()
    plain = unified_loss(_outputs(), tgt, **WEIGHTS)
    weighted = unified_loss(_outputs(), tgt, **WEIGHTS, class_weights=torch.tensor([1.0, 5.0, 0.2]))
    smooth = unified_loss(_outputs(), tgt, **WEIGHTS, label_smoothing=0.2)
    assert not torch.allclose(plain["temporal"], weighted["temporal"])
    assert not torch.allclose(plain["temporal"], smooth["temporal"])


def test_unified_loss_module_matches_function() -> None:
    module = UnifiedLoss(**WEIGHTS, va_loss="ccc", class_weights=[1.0, 2.0, 1.0], label_smoothing=0.1)
    peak, peak_y = _peak()
    got = module(_outputs(), _targets(), peak_logits=peak, peak_targets=peak_y)
    want = unified_loss(_outputs(), _targets(), **WEIGHTS, va_loss="ccc", class_weights=torch.tensor([1.0, 2.0, 1.0]),
                        label_smoothing=0.1, peak_logits=peak, peak_targets=peak_y)
    assert all(torch.allclose(got[k], want[k]) for k in want)
    assert "eta1=0.5" in repr(module)
    with pytest.raises(ValueError, match="va_loss"):
        UnifiedLoss(va_loss="l1")  # type: ignore[arg-type]


def test_a_model_without_the_papers_auxiliary_heads_gets_zero_for_their_terms() -> None:
    """The comparison models (CNN-GRU, LBVCNN, ConvLSTM, FAN) return no vit/vlad logits and have no M_H input."""
    out = _outputs()
    del out["vit_logits"]
    out["vlad_logits"] = None
    losses = unified_loss(out, _targets(), **WEIGHTS)
    assert losses["m_b"].item() == 0.0 and losses["m_y"].item() == 0.0 and losses["m_h"].item() == 0.0
    expected = WEIGHTS["lambda_t"] * losses["temporal"] + WEIGHTS["lambda_va"] * losses["va"]
    torch.testing.assert_close(losses["total"], expected)
    losses["total"].backward()
    assert out["logits"].grad is not None and out["logits"].grad.abs().sum() > 0


def test_soft_cross_entropy_is_hard_ce_on_one_hot_targets_and_the_vote_ce_otherwise() -> None:
    from classemo.losses.unified import soft_cross_entropy

    logits = torch.randn(6, C, generator=torch.Generator().manual_seed(3))
    label = torch.tensor([0, 1, 2, 2, 1, 0])
    onehot = F.one_hot(label, C).float()
    w = torch.tensor([1.0, 4.0, 0.5])
    assert torch.allclose(soft_cross_entropy(logits, onehot), F.cross_entropy(logits, label))
    assert torch.allclose(soft_cross_entropy(logits, onehot, w), F.cross_entropy(logits, label, weight=w))
    # A vote distribution: -sum q log p per sample, averaged (no weights).
    votes = torch.tensor([[0.7, 0.3, 0.0]]).repeat(6, 1)
    want = -(votes * logits.log_softmax(-1)).sum(-1).mean()
    assert torch.allclose(soft_cross_entropy(logits, votes), want)
    # Smoothing mixes in the uniform distribution.
    smooth = soft_cross_entropy(logits, onehot, label_smoothing=0.3)
    assert torch.allclose(smooth, soft_cross_entropy(logits, onehot * 0.7 + 0.1))


def test_soft_labels_drive_every_ce_term_and_clips_without_them_keep_their_label() -> None:
    tgt = _targets()
    peak, peak_y = _peak()
    hard = unified_loss(_outputs(), tgt, **WEIGHTS, peak_logits=peak, peak_targets=peak_y)
    # Soft labels equal to the one-hot labels (or absent: NaN rows) give exactly the hard loss.
    onehot = F.one_hot(tgt["label"], C).float()
    onehot[1] = float("nan")
    same = unified_loss(_outputs(), {**tgt, "soft": onehot}, **WEIGHTS, peak_logits=peak, peak_targets=peak_y,
                        peak_soft=torch.full((6, C), float("nan")))
    for k in ("m_h", "m_b", "m_y", "temporal", "total"):
        assert torch.allclose(same[k], hard[k], atol=1e-6), k
    # Real vote distributions change the clip and per-frame terms, and only those.
    votes = torch.tensor([[0.6, 0.4, 0.0], [0.0, 0.5, 0.5], [0.2, 0.8, 0.0], [0.1, 0.1, 0.8]])
    out = _outputs()
    soft = unified_loss(out, {**tgt, "soft": votes}, **WEIGHTS, peak_logits=peak, peak_targets=peak_y)
    for k in ("m_b", "m_y", "temporal"):
        assert not torch.allclose(soft[k], hard[k]), k
    assert torch.allclose(soft["m_h"], hard["m_h"]) and torch.allclose(soft["va"], hard["va"])
    want = -(votes * out["logits"].log_softmax(-1)).sum(-1).mean()
    assert torch.allclose(soft["temporal"], want)
    soft["total"].backward()
    assert out["logits"].grad is not None and out["vit_logits"].grad is not None
    with pytest.raises(ValueError, match=r"targets\['soft'\]"):
        unified_loss(_outputs(), {**tgt, "soft": votes[:, :2]}, **WEIGHTS)
