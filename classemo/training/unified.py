"""Plain-PyTorch train and eval steps of the unified model (no Ray: `jobs/stages.py` wraps these in Ray Train).

"Emotion recognition in learning scenes supported by smart classrooms": one step computes the clip forward (M_B,
M_Y, temporal CE, V/A) and the peak-frame forward (M_H) and combines them with `classemo.losses.unified`.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from classemo.losses.unified import UnifiedLoss
from classemo.metrics import VA_SOURCES, MetricAccumulator


class UnifiedStep(nn.Module):
    """Clip forward plus peak-frame forward (the M_H input) in one `forward`, so DDP sees a single forward pass.

    A model without `forward_peak` (the comparison models) gets no M_H term: its peak frames are not run.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: Tensor, mask: Tensor, peaks: Tensor | None = None) -> dict[str, Any]:
        """Clip outputs plus `peak_logits` (N, C) for M_H: of `peaks` when given; without them, of 1-frame clips'
        own frames (a still is its own peak frame, so the clip pass serves M_H: a second spatial pass over another
        augmented view of the same face would double the step's cost); else None."""
        out = dict(self.model(frames, mask))  # frames (B, T, 3, S, S), mask (B, T)
        frame_peaks = out.pop("peak_logits", None)  # (B, T, C): M_H logits of the clips' own frames
        forward_peak = getattr(self.model, "forward_peak", None)
        if peaks is not None and forward_peak is not None:
            out["peak_logits"] = forward_peak(peaks)  # (N, C)
        elif peaks is None and frame_peaks is not None and frames.shape[1] == 1:
            out["peak_logits"] = frame_peaks[:, 0]  # (B, C)
        else:
            out["peak_logits"] = None
        return out


def autocast_context(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on GPU (no loss scaling needed, unlike fp16); full precision on CPU."""
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def warmup_cosine(warmup_epochs: int, epochs: int) -> Callable[[int], float]:
    """LR multiplier per epoch: linear warmup, then cosine decay to 5% (ViTs are unstable without warmup)."""

    def factor(epoch: int) -> float:
        if epoch < warmup_epochs:
            return (epoch + 1) / (warmup_epochs + 1)
        span = max(1, epochs - warmup_epochs)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (epoch - warmup_epochs) / span))

    return factor


def train_step(
    step_model: nn.Module,
    loss_fn: UnifiedLoss,
    optimizer: torch.optim.Optimizer,
    batch: Mapping[str, Tensor],
    *,
    peak_batch: tuple[Tensor, Tensor] | None = None,
    grad_clip: float = 0.0,
    bf16: bool = True,
) -> dict[str, float]:
    """One optimisation step on a decoded batch.

    Args:
        step_model: `UnifiedStep` (possibly DDP-wrapped).
        loss_fn: The unified loss.
        optimizer: Optimiser over the model's parameters.
        batch: `frames (B, T, 3, S, S)`, `mask (B, T)`, `label (B,)`, `va (B, 2)` (NaN = missing), `peak`, and
            optionally `soft (B, C)` soft labels (NaN rows where a clip has none).
        peak_batch: `(images (N, 3, S, S), targets (N,))` for M_H: real peak frames mixed with StarGAN ones; the
            batch's real peak frames when None.
        grad_clip: Max gradient norm (0: off).
        bf16: Autocast to bfloat16 on GPU.

    Returns:
        The loss terms as floats (`total`, `m_h`, `m_b`, `m_y`, `temporal`, `va`).
    """
    frames = batch["frames"]
    soft = batch.get("soft")  # (B, C) vote distributions, NaN rows where none; absent unless soft labels are on
    # The clips' own peak frames share their soft labels; a StarGAN-mixed batch is labelled by target expression.
    peaks, peak_targets, peak_soft = ((*peak_batch, None) if peak_batch is not None
                                      else (batch["peak"], batch["label"], soft))
    if peak_batch is None and frames.shape[1] == 1:
        peaks = None  # stills: UnifiedStep takes M_H's logits from the clip pass (their frame is their peak)
    step_model.train()
    with autocast_context(frames.device, bf16):
        out = step_model(frames, batch["mask"], peaks)
        # Losses in fp32: CE and the CCC statistics lose too much in bf16.
        out = {k: (v.float() if isinstance(v, Tensor) else v) for k, v in out.items()}
        targets = {"label": batch["label"], "va": batch["va"], "mask": batch["mask"]}
        if soft is not None:
            targets["soft"] = soft
        losses = loss_fn(out, targets, peak_logits=out["peak_logits"], peak_targets=peak_targets,
                         peak_soft=peak_soft)
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(step_model.parameters(), grad_clip)
    optimizer.step()
    return {k: float(v.detach()) for k, v in losses.items()}


def gather_metrics(acc: MetricAccumulator) -> MetricAccumulator:
    """Merge every worker's accumulated samples into one accumulator on every worker.

    The state is a few numbers per clip, so an all-gather of it is cheap and every metric (UAR, CCC) is then
    computed once over all clips, never averaged over workers. No-op without an initialised process group.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return acc
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, acc.state())
    merged = MetricAccumulator(acc.num_classes, acc.labels)
    for state in states:
        merged.merge(state)
    return merged


@torch.no_grad()
def evaluate_batches(model: nn.Module, batches: Iterable[Mapping[str, Tensor]], labels: Sequence[str], *,
                     bf16: bool = True, device: torch.device | str | None = None) -> MetricAccumulator:
    """Run the unified model over decoded batches and accumulate this worker's metric samples.

    Args:
        model: The bare unified model (not the DDP wrapper: evaluation needs no gradient sync).
        batches: Dicts with `frames`, `mask`, `label`, `va`, `va_source` (indices into VA_SOURCES).
        labels: Class names.
        bf16: Autocast to bfloat16 on GPU.
        device: Where to move batches; the model's device when None.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    acc = MetricAccumulator(len(labels), list(labels))
    model.eval()
    for batch in batches:
        frames, mask = batch["frames"].to(device), batch["mask"].to(device)
        with autocast_context(device, bf16):
            out = model(frames, mask)
        source = [VA_SOURCES[int(i)] for i in batch["va_source"]] if "va_source" in batch else None
        # Probabilities, not logits: the accumulator would read a batch of logits that all lie in [0, 1] as ones.
        acc.update(out["logits"].float().softmax(-1), batch["label"], va_pred=out["va"].float(), va_true=batch["va"],
                   va_source=source)
    return acc
