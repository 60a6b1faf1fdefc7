"""Enhanced convolutional LSTM with spatial and temporal skip connections and temporal gates for facial expression
recognition from video (R. Miyoshi, N. Nagata, M. Hashimoto, Neural Computing and Applications, 2021), on the
ConvLSTM of Shi et al. ("Convolutional LSTM network: a machine learning approach for precipitation nowcasting",
NeurIPS 2015); a comparison model of the paper's Tables 1-2.

Published design: a per-frame CNN feeds stacked ConvLSTM layers (LSTM gates computed by convolutions, so the state
keeps its spatial layout), enhanced by a spatial skip connection (the CNN's map bypasses the recurrent stack and joins
its output), a temporal skip connection (the gates also read the hidden state of `skip_steps` frames back, so
information older than the previous frame reaches the present without passing through every step) and temporal
gates that weight each step's output; the original runs two such streams.

Here: one stream on the shared `FrameCNN` (a small ResNet instead of the original CNN), ConvLSTM cells without
Shi et al.'s peephole terms, the spatial skip as a concatenation of the CNN map with the top hidden state, and the
temporal gate as a learned sigmoid per step, normalised over real frames into pooling weights (`frame_weights`).
Padded steps carry every state unchanged and get zero weight, so padding changes no output at real positions.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from einops import rearrange
from torch import nn

from classemo.models.base import ClipModel, preset
from classemo.models.frame_cnn import FrameCNN, Norm
from classemo.models.registry import register_model

State = tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]  # (h, c, [h_{t-1}, ..., h_{t-k}] of real steps)


class ConvLSTMCell(nn.Module):
    """ConvLSTM cell (Shi et al. eq. 3, no peepholes) whose gates also read h_{t-k}: the temporal skip connection."""

    def __init__(self, in_channels: int, hidden_channels: int, *, kernel_size: int = 3) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        # One conv over [x_t, h_{t-1}, h_{t-k}] gives the input, forget, output gates and the candidate.
        self.gates = nn.Conv2d(in_channels + 2 * hidden_channels, 4 * hidden_channels, kernel_size,
                               padding=kernel_size // 2)
        with torch.no_grad():  # forget-gate bias 1: remember by default early in training
            self.gates.bias.zero_()
            self.gates.bias[hidden_channels:2 * hidden_channels].fill_(1.0)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
                h_skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: x (B, C_in, h, w), states (B, C_h, h, w) -> new (h, c)."""
        i, f, o, g = self.gates(torch.cat([x, h, h_skip], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class EnhancedConvLSTM(nn.Module):
    """Stacked ConvLSTM cells with temporal skips; a step outputs [top hidden state; input map] (the spatial skip)."""

    def __init__(self, in_channels: int, hidden_channels: Sequence[int], *, skip_steps: int = 2,
                 kernel_size: int = 3) -> None:
        """Build the stack.

        Args:
            in_channels: channels of the per-frame CNN map.
            hidden_channels: hidden channels of each stacked layer.
            skip_steps: k of the temporal skip connection (the gates read h_{t-k}).
            kernel_size: spatial kernel of the gate convolutions.
        """
        super().__init__()
        if not hidden_channels or skip_steps < 1:
            raise ValueError(f"need at least one layer and skip_steps >= 1, got {list(hidden_channels)}, {skip_steps}")
        channels = [in_channels, *hidden_channels]
        self.cells = nn.ModuleList([ConvLSTMCell(c_in, c_h, kernel_size=kernel_size)
                                    for c_in, c_h in zip(channels, channels[1:])])
        self.skip_steps = skip_steps
        self.out_channels = hidden_channels[-1] + in_channels

    def initial_state(self, x: torch.Tensor) -> list[State]:
        """Zero states for a batch of maps x (B, C, h, w)."""
        states = []
        for cell in self.cells:
            zeros = x.new_zeros(x.shape[0], cell.hidden_channels, *x.shape[2:])
            states.append((zeros, zeros, [zeros] * self.skip_steps))
        return states

    def step(self, x: torch.Tensor, states: list[State], real: torch.Tensor) -> tuple[torch.Tensor, list[State]]:
        """Advance one time step.

        Args:
            x: (B, C, h, w) CNN map of this step.
            states: per layer (h, c, history), as from `initial_state` or the previous step.
            real: (B,) bool, True = real frame; a padded step leaves every state (and the skip history) unchanged.

        Returns:
            The step output (B, C_h + C, h, w) and the new states.
        """
        keep = real.view(-1, 1, 1, 1)
        new_states, inp = [], x
        for cell, (h, c, history) in zip(self.cells, states):
            h_new, c_new = cell(inp, h, c, history[-1])
            h_new, c_new = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
            history = [torch.where(keep, h_new, history[0]), *[torch.where(keep, history[i - 1], history[i])
                                                               for i in range(1, len(history))]]
            new_states.append((h_new, c_new, history))
            inp = h_new
        return torch.cat([inp, x], dim=1), new_states

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run over a clip: maps (B, T, C, h, w), mask (B, T) -> step outputs (B, T, C_h + C, h, w)."""
        states = self.initial_state(x[:, 0])
        outputs = []
        for t in range(x.shape[1]):
            out, states = self.step(x[:, t], states, mask[:, t])
            outputs.append(out)
        return torch.stack(outputs, dim=1)


class TemporalGate(nn.Module):
    """Temporal gate: a learned sigmoid score per step, normalised over real frames into pooling weights."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Step features (B, T, D), mask (B, T) -> weights (B, T), zero at padding, summing to 1 over real frames."""
        gate = torch.sigmoid(self.score(x)).squeeze(-1) * mask.to(x.dtype)  # (B, T)
        return gate / gate.sum(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


class EnhancedConvLSTMNet(ClipModel):
    """FrameCNN maps -> Enhanced ConvLSTM -> per-step features -> temporal-gate pooling -> heads."""

    # What forward_temporal runs: kept in float32 under a bf16 Predictor.
    float32_modules = ("recurrent", "gate", "head", "va_head")

    def __init__(
        self,
        *,
        num_classes: int = 7,
        image_size: int = 64,
        num_frames: int = 8,
        cnn_widths: Sequence[int] = (16, 32, 64),
        cnn_blocks: int = 1,
        cnn_stem_stride: int = 2,
        cnn_norm: Norm = "batch",
        hidden_channels: Sequence[int] = (32, 32),
        skip_steps: int = 2,
        kernel_size: int = 3,
        drop_rate: float = 0.0,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
    ) -> None:
        """Build the network.

        Args:
            num_classes: discrete emotion classes C.
            image_size: square face-crop side S in pixels.
            num_frames: frames per clip T in training.
            cnn_widths: channels per FrameCNN stage (the last is the map's channels).
            cnn_blocks: residual blocks per FrameCNN stage.
            cnn_stem_stride: stride of the FrameCNN stem.
            cnn_norm: FrameCNN normalisation, "batch" or "group".
            hidden_channels: hidden channels of each stacked ConvLSTM layer.
            skip_steps: k of the temporal skip connection.
            kernel_size: spatial kernel of the ConvLSTM gates.
            drop_rate: dropout before the heads.
            mean: per-channel input mean (None: classemo.preprocessing.DEFAULT_MEAN).
            std: per-channel input std, as `mean`.
        """
        grid = (image_size - 1) // cnn_stem_stride + 1  # side of the map after the stem and each stride-2 stage
        for _ in cnn_widths[1:]:
            grid = (grid - 1) // 2 + 1
        super().__init__(num_classes=num_classes, image_size=image_size, num_frames=num_frames,
                         embed_dim=cnn_widths[-1] * grid ** 2, mean=mean, std=std)
        self.grid = grid
        self.cnn = FrameCNN(cnn_widths, blocks_per_stage=cnn_blocks, stem_stride=cnn_stem_stride, norm=cnn_norm)
        self.recurrent = EnhancedConvLSTM(self.cnn.out_channels, hidden_channels, skip_steps=skip_steps,
                                          kernel_size=kernel_size)
        self.out_dim = self.recurrent.out_channels
        self.gate = TemporalGate(self.out_dim)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.out_dim, num_classes)
        self.va_head = nn.Linear(self.out_dim, 2)

    def forward_spatial(self, images: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """(N, 3, S, S) normalised crops -> `features` (N, C * h * w): the flattened FrameCNN map."""
        self._check_images(images)
        return {"features": rearrange(self.cnn(images), "n c h w -> n (c h w)")}

    def forward_temporal(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Clip outputs from flattened per-frame maps.

        Args:
            features: (B, T, D) flattened FrameCNN maps.
            mask: (B, T) bool, True = real frame (None: all real).

        Returns:
            `logits` (B, C), `va` (B, 2) in [-1, 1], `frame_logits` (B, T, C), `frame_va` (B, T, 2), and the
            temporal gate's pooling weights `frame_weights` (B, T), zero at padding and summing to 1 per clip.
        """
        self._check_features(features)
        mask = self._check_mask(mask, features.shape[:2], features.device)
        maps = rearrange(features, "b t (c h w) -> b t c h w", h=self.grid, w=self.grid)
        frame_out = self.recurrent(maps, mask).mean(dim=(3, 4))  # (B, T, C_h + C)
        weights = self.gate(frame_out, mask)  # (B, T)
        pooled = torch.einsum("bt,btd->bd", weights, frame_out)
        return {
            "logits": self.head(self.head_drop(pooled)),
            "va": torch.tanh(self.va_head(pooled)),
            "frame_logits": self.head(self.head_drop(frame_out)),
            "frame_va": torch.tanh(self.va_head(frame_out)),
            "frame_weights": weights,
        }

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the class head (clip and frame logits share it); the V/A head is kept."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.out_dim, num_classes)


@register_model
def convlstm_tiny(**kwargs: Any) -> EnhancedConvLSTMNet:
    """CPU preset: 64 px, FrameCNN 16-32-64 to 64 channels at 8x8, two ConvLSTM layers of 32, skip 2, 8 frames."""
    model_args = dict(image_size=64, num_frames=8, cnn_widths=(16, 32, 64), cnn_stem_stride=2,
                      hidden_channels=(32, 32), skip_steps=2)
    return preset(EnhancedConvLSTMNet, "convlstm_tiny", model_args, kwargs)


@register_model
def convlstm_base(**kwargs: Any) -> EnhancedConvLSTMNet:
    """GPU preset: 112 px, ResNet-18-shaped FrameCNN to 512 channels at 7x7, two ConvLSTM layers of 128, 16 frames."""
    model_args = dict(image_size=112, num_frames=16, cnn_widths=(64, 128, 256, 512), cnn_blocks=2,
                      cnn_stem_stride=2, hidden_channels=(128, 128), skip_steps=2, drop_rate=0.2)
    return preset(EnhancedConvLSTMNet, "convlstm_base", model_args, kwargs)
