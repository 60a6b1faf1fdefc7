"""The paper's unified loss M = M_H + η1·M_B + η2·M_Y, plus the temporal head's CE and a valence/arousal term.

"Emotion recognition in learning scenes supported by smart classrooms", eq. 15-17 (garbled in the source; the exact
form we use is written in docs/losses.md). Losses stay out of the model's `forward`: the model returns its heads'
outputs and this module combines them.
"""

from __future__ import annotations

from typing import Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

VaLoss = Literal["mse", "ccc"]
LOSS_KEYS: tuple[str, ...] = ("total", "m_h", "m_b", "m_y", "temporal", "va")


def label_counts(labels: Sequence[int] | Tensor, num_classes: int) -> Tensor:
    """Count labels per class, `(C,)` int64."""
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]")
    return torch.bincount(labels, minlength=num_classes)


def class_weights_from_counts(counts: Sequence[int] | Tensor, power: float = 1.0) -> Tensor:
    """Inverse-frequency class weights w_c ∝ 1 / n_c^power, normalised so the mean weight per sample is 1.

    Without empty classes this is w_c = N / (C · n_c) (scikit-learn's "balanced"). PyTorch's weighted CE divides
    by the batch's weight sum, so the normalisation does not change the loss; it keeps the weights readable (1 = an
    average sample) and comparable across datasets in logs. A class with no samples is counted as having one, to
    keep its weight finite (it can still appear among StarGAN-generated peak frames).

    Args:
        counts: Samples per class.
        power: 1 is fully balanced; 0.5 (inverse square root) tempers the weights for very skewed data, such as
            classroom footage that is mostly neutral, where full balancing makes rare classes be over-predicted;
            0 gives equal weights.

    Returns:
        `(C,)` float32 weights.
    """
    counts = torch.as_tensor(counts, dtype=torch.float32).flatten()
    if counts.numel() == 0 or (counts < 0).any():
        raise ValueError(f"class counts must be a non-empty list of non-negative numbers, got {counts.tolist()}")
    if not 0.0 <= power <= 1.0:
        raise ValueError(f"class-weight power must be in [0, 1], got {power}")
    weights = counts.clamp_min(1.0) ** -power
    return weights * counts.sum().clamp_min(1.0) / (weights * counts).sum().clamp_min(1e-12)


def ccc_loss(pred: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """1 - concordance correlation coefficient over the batch (1-D tensors, at least two values).

    Sample (n - 1) statistics, as torchmetrics' `ConcordanceCorrCoef` uses, so the loss is 1 - the reported metric.
    """
    pm, tm = pred.mean(), target.mean()
    pv, tv = pred.var(), target.var()
    cov = ((pred - pm) * (target - tm)).sum() / (pred.numel() - 1)
    return 1.0 - 2.0 * cov / (pv + tv + (pm - tm) ** 2 + eps)


def masked_va_loss(pred: Tensor, target: Tensor, kind: VaLoss = "mse") -> Tensor:
    """Valence/arousal loss over the entries that are present; NaN in `target` means "not annotated".

    Args:
        pred: `(B, 2)` predicted (valence, arousal).
        target: `(B, 2)` targets, NaN where missing (each dimension on its own).
        kind: "mse", or "ccc" for 1 - CCC averaged over valence and arousal. CCC needs at least two present
            values in a dimension; a dimension with fewer falls back to the squared error, so a batch with a
            single annotated clip still teaches the head something.

    Returns:
        Scalar loss; exactly 0 (with a gradient path) when nothing is present.
    """
    present = ~torch.isnan(target)  # (B, 2)
    if not present.any():
        return pred.sum() * 0.0
    safe_target = torch.where(present, target, torch.zeros_like(target))
    if kind == "mse":
        return ((pred - safe_target) ** 2)[present].mean()
    if kind != "ccc":
        raise ValueError(f"va_loss must be 'mse' or 'ccc', got {kind!r}")
    terms = []
    for d in range(pred.shape[1]):
        p, t = pred[present[:, d], d], target[present[:, d], d]
        if p.numel() >= 2:
            terms.append(ccc_loss(p, t))
        elif p.numel() == 1:
            terms.append(((p - t) ** 2).mean())
    return torch.stack(terms).mean()


def soft_cross_entropy(
    logits: Tensor, target: Tensor, weight: Tensor | None = None, label_smoothing: float = 0.0
) -> Tensor:
    """Cross-entropy against target distributions, class-weighted as the hard `CE_w` is (docs/losses.md).

    `Σ_i Σ_c w_c q_ic (-log p_ic) / Σ_i Σ_c w_c q_ic` with `q = (1 - ε) target + ε / C`: for one-hot targets and no
    smoothing this is `F.cross_entropy(logits, label, weight=w)`; for a crowd's vote distribution it is the FER+
    paper's "probability distribution" loss (Barsoum et al. 2016), which beat training on the majority label.

    Args:
        logits: `(N, C)`.
        target: `(N, C)` rows that are non-negative and sum to 1.
        weight: `(C,)` class weights, or None for all 1.
        label_smoothing: ε.
    """
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + label_smoothing / target.shape[-1]
    mass = target if weight is None else target * weight  # (N, C): each sample's weight spread over its classes
    return -(mass * logits.log_softmax(dim=-1)).sum() / mass.sum().clamp_min(1e-12)


def target_distribution(label: Tensor, soft: Tensor) -> Tensor:
    """`(B, C)` training targets: a clip's soft label where it has one, else the one-hot of its hard label.

    Args:
        label: `(B,)` hard labels.
        soft: `(B, C)` soft labels, a row of NaN where the clip has none (a dataset without votes, a merged source).
    """
    onehot = F.one_hot(label, soft.shape[-1]).to(soft.dtype)
    present = ~torch.isnan(soft).any(dim=-1, keepdim=True)  # (B, 1)
    return torch.where(present, soft, onehot)


class _ClassCE:
    """Every CE term of one batch: hard-label `F.cross_entropy`, or `soft_cross_entropy` when the batch carries
    soft labels (then clips without one use their one-hot label, so both kinds mix in one batch)."""

    def __init__(self, label: Tensor, soft: Tensor | None, weight: Tensor | None, label_smoothing: float) -> None:
        self.label, self.weight, self.smoothing = label, weight, label_smoothing
        self.dist = None if soft is None else target_distribution(label, soft.to(torch.float32))  # (B, C)

    def clips(self, logits: Tensor) -> Tensor:
        """CE of clip logits `(B, C)`."""
        if self.dist is None:
            return F.cross_entropy(logits, self.label, weight=self.weight, label_smoothing=self.smoothing)
        return soft_cross_entropy(logits, self.dist.to(logits.dtype), self.weight, self.smoothing)

    def frames(self, frame_logits: Tensor, mask: Tensor | None) -> Tensor:
        """Per-frame CE `(B, T, C)` with the clip's target, over real (unmasked) frames only."""
        t = frame_logits.shape[1]
        flat = rearrange(frame_logits, "b t c -> (b t) c")
        keep = None if mask is None else rearrange(mask.to(torch.bool), "b t -> (b t)")
        if self.dist is None:
            flat_label = repeat(self.label, "b -> (b t)", t=t)
            if keep is not None:
                flat, flat_label = flat[keep], flat_label[keep]
            return F.cross_entropy(flat, flat_label, weight=self.weight, label_smoothing=self.smoothing)
        flat_dist = repeat(self.dist, "b c -> (b t) c", t=t).to(flat.dtype)
        if keep is not None:
            flat, flat_dist = flat[keep], flat_dist[keep]
        return soft_cross_entropy(flat, flat_dist, self.weight, self.smoothing)


def unified_loss(
    outputs: Mapping[str, Tensor | None],
    targets: Mapping[str, Tensor],
    *,
    eta1: float,
    eta2: float,
    lambda_t: float,
    lambda_va: float,
    va_loss: VaLoss = "mse",
    peak_logits: Tensor | None = None,
    peak_targets: Tensor | None = None,
    peak_soft: Tensor | None = None,
    class_weights: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> dict[str, Tensor]:
    """M = M_H + η1·M_B + η2·M_Y + λ_t·CE(temporal) + λ_va·L_va (docs/losses.md).

    Args:
        outputs: A clip model's output dict (classemo.models.base): `logits (B, C)`, `va (B, 2)`,
            `frame_logits (B, T, C)`, and the paper's auxiliary heads `vit_logits (B, T, C)` and `vlad_logits
            (B, T, C)`, each absent or None for a model without it (NetVLAD off, or a comparison model): its term
            is then 0.
        targets: The batch: `label (B,)` int64, optional `va (B, 2)` with NaN for missing values, optional
            `mask (B, T)` bool with True for real frames (padding is left out of the per-frame losses), optional
            `soft (B, C)` soft labels (a crowd's vote distribution; a NaN row where a clip has none): every clip
            and frame CE term then uses `soft_cross_entropy` against them.
        eta1: Weight η1 of M_B, the ViT head's per-frame CE.
        eta2: Weight η2 of M_Y, the NetVLAD head's per-frame CE.
        lambda_t: Weight of the temporal (clip-level) CE.
        lambda_va: Weight of the valence/arousal loss.
        va_loss: "mse" or "ccc".
        peak_logits: `forward_peak` logits `(N, C)` of the peak-frame batch (real peak frames, mixed with
            StarGAN-generated ones when StarGAN is on); M_H is 0 without it.
        peak_targets: `(N,)` labels of `peak_logits` (the target expression for generated frames).
        peak_soft: `(N, C)` soft labels of the peak batch (NaN rows where none), when it holds the clips' own
            real peak frames; None for a batch mixed with StarGAN frames, whose targets are the hard expressions.
        class_weights: `(C,)` CE class weights (see `class_weights_from_counts`), used by every CE term.
        label_smoothing: Label smoothing of every CE term.

    Returns:
        Scalar tensors `total`, `m_h`, `m_b`, `m_y`, `temporal`, `va`; `total` carries the gradient.
    """
    label = targets["label"].long()
    logits = outputs["logits"]
    mask = targets.get("mask")
    # Shape checks only (no value checks): reading values would force a GPU sync every step.
    if label.shape != logits.shape[:1]:
        raise ValueError(f"targets['label'] must have shape ({logits.shape[0]},), got {tuple(label.shape)}")
    frames = outputs["frame_logits"].shape[:2]
    if mask is not None and mask.shape != frames:
        raise ValueError(f"targets['mask'] must have shape {tuple(frames)} (B, T), got {tuple(mask.shape)}")
    if class_weights is not None:
        class_weights = class_weights.to(device=logits.device, dtype=logits.dtype)
    soft = targets.get("soft")
    if soft is not None and soft.shape != logits.shape:
        raise ValueError(f"targets['soft'] must have shape {tuple(logits.shape)} (B, C), got {tuple(soft.shape)}")
    zero = logits.sum() * 0.0
    ce = _ClassCE(label, soft, class_weights, label_smoothing)

    if peak_logits is not None:
        if peak_targets is None:
            raise ValueError("peak_logits were given without peak_targets")
        m_h = _ClassCE(peak_targets.long(), peak_soft, class_weights, label_smoothing).clips(peak_logits)
    else:
        m_h = zero
    vit = outputs.get("vit_logits")
    m_b = ce.frames(vit, mask) if vit is not None else zero
    vlad = outputs.get("vlad_logits")
    m_y = ce.frames(vlad, mask) if vlad is not None else zero
    temporal = ce.clips(logits)
    va_target = targets.get("va")
    if va_target is not None and va_target.shape != outputs["va"].shape:
        raise ValueError(f"targets['va'] must have shape {tuple(outputs['va'].shape)}, got {tuple(va_target.shape)}")
    va = masked_va_loss(outputs["va"], va_target.to(outputs["va"]), va_loss) if va_target is not None else zero

    total = m_h + eta1 * m_b + eta2 * m_y + lambda_t * temporal + lambda_va * va
    return {"total": total, "m_h": m_h, "m_b": m_b, "m_y": m_y, "temporal": temporal, "va": va}


class UnifiedLoss(nn.Module):
    """The paper's unified loss M = M_H + η1·M_B + η2·M_Y (eq. 15-17) with temporal CE and V/A terms."""

    def __init__(
        self,
        *,
        eta1: float = 0.5,
        eta2: float = 0.5,
        lambda_t: float = 1.0,
        lambda_va: float = 0.5,
        va_loss: VaLoss = "mse",
        class_weights: Tensor | Sequence[float] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if va_loss not in ("mse", "ccc"):
            raise ValueError(f"va_loss must be 'mse' or 'ccc', got {va_loss!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.eta1, self.eta2, self.lambda_t, self.lambda_va = eta1, eta2, lambda_t, lambda_va
        self.va_loss, self.label_smoothing = va_loss, label_smoothing
        weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", weights)

    def forward(
        self,
        outputs: Mapping[str, Tensor | None],
        targets: Mapping[str, Tensor],
        *,
        peak_logits: Tensor | None = None,
        peak_targets: Tensor | None = None,
        peak_soft: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """See `unified_loss`."""
        return unified_loss(
            outputs,
            targets,
            eta1=self.eta1,
            eta2=self.eta2,
            lambda_t=self.lambda_t,
            lambda_va=self.lambda_va,
            va_loss=self.va_loss,
            peak_logits=peak_logits,
            peak_targets=peak_targets,
            peak_soft=peak_soft,
            class_weights=self.class_weights,
            label_smoothing=self.label_smoothing,
        )

    def extra_repr(self) -> str:
        return (
            f"eta1={self.eta1}, eta2={self.eta2}, lambda_t={self.lambda_t}, lambda_va={self.lambda_va}, "
            f"va_loss={self.va_loss!r}, label_smoothing={self.label_smoothing}"
        )
