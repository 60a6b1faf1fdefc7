"""CNN-GRU of D. Kollias, P. Tzirakis, M. A. Nicolaou, A. Papaioannou, G. Zhao, B. Schuller, I. Kotsia and
S. Zafeiriou, "Deep affect prediction in-the-wild: Aff-Wild database and challenge, deep architectures, and beyond",
International Journal of Computer Vision, 2019 (AffWildNet).

Published design: the convolutional layers of a face CNN (VGG-Face or ResNet-50) embed each frame, a fully
connected layer maps the embedding to the recurrent input, and two stacked GRU layers (128 units each) run over the
frame sequence, predicting valence/arousal at every step. Here the per-frame CNN is the shared `FrameCNN`
(global-average pooled) so that the comparison is about the temporal part, the facial landmarks that AffWildNet
concatenates to the CNN feature are left out (the classroom crops carry none), and two heads read the GRU state: a
class head and a tanh valence/arousal head, on the clip feature (the state after the clip's last real frame) and on
every step's output (the per-frame timeline).

Padding: the GRU sees only the real frames of each clip, in order, packed (cuDNN on GPU). A mask that is not a
prefix is handled by moving the real frames to the front before packing, so a padded step anywhere behaves as if
it were gated out, h_t = h_{t-1}: it neither updates the state nor reaches a later output, and its own per-step
output is the state carried from the last real frame before it (zeros before the first one).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from classemo.models.base import ClipModel, preset
from classemo.models.frame_cnn import FrameCNN, Norm
from classemo.models.registry import register_model


class MaskedGRU(nn.Module):
    """Stacked GRU over the real frames of each clip; padded steps carry the state h_t = h_{t-1} (see module doc)."""

    def __init__(self, input_dim: int, hidden_dim: int, *, num_layers: int, dropout: float = 0.0) -> None:
        """Build the recurrent part.

        Args:
            input_dim: width D of the per-frame features.
            hidden_dim: GRU units H per layer.
            num_layers: stacked GRU layers.
            dropout: dropout between GRU layers (packed, so it draws the same masks whatever padding follows).
        """
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"the GRU needs at least one layer, got num_layers={num_layers}")
        self.gru = nn.GRU(input_dim, hidden_dim, num_layers=num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the GRU.

        Args:
            x: (B, T, D) per-frame features.
            mask: (B, T) bool, True = real frame; every clip needs at least one.

        Returns:
            Per-step outputs (B, T, H) of the last layer and the clip feature (B, H): the last layer's hidden state
            at each clip's last real frame.
        """
        num_frames = mask.shape[1]
        # A stable sort on "is padding" moves each clip's real frames to the front, in their order.
        order = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)  # (B, T)
        compact = x.gather(1, order.unsqueeze(-1).expand_as(x))  # (B, T, D), real frames first
        lengths = mask.sum(dim=1).cpu()
        packed = pack_padded_sequence(compact, lengths, batch_first=True, enforce_sorted=False)
        steps, last = self.gru(packed)  # last: (num_layers, B, H), back in batch order
        steps, _ = pad_packed_sequence(steps, batch_first=True, total_length=num_frames)  # (B, T, H)
        # Step t of the clip has seen `seen[t]` real frames, so its state is compact output seen[t] - 1; this one
        # gather puts real outputs back in place and carries the state through padded steps.
        seen = mask.cumsum(dim=1)  # (B, T)
        index = (seen - 1).clamp_min(0).unsqueeze(-1).expand(-1, -1, steps.shape[-1])  # (B, T, H)
        outputs = steps.gather(1, index) * (seen > 0).unsqueeze(-1).to(steps.dtype)  # h_0 = 0 before a real frame
        return outputs, last[-1]


class CNNGRU(ClipModel):
    """AffWildNet-style CNN-RNN: FrameCNN -> pooled -> FC (+ dropout) per frame, a stacked GRU over frames."""

    def __init__(
        self,
        *,
        num_classes: int = 7,
        image_size: int = 64,
        num_frames: int = 8,
        widths: Sequence[int] = (32, 64, 128),
        blocks_per_stage: int = 1,
        stem_stride: int = 1,
        norm: Norm = "batch",
        embed_dim: int = 128,
        hidden_dim: int = 128,
        num_layers: int = 2,
        drop_rate: float = 0.0,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
    ) -> None:
        """Build the network.

        Args:
            num_classes: discrete emotion classes C.
            image_size: square face-crop side S in pixels.
            num_frames: frames per clip T in training (the GRU runs any length).
            widths: FrameCNN channels per stage.
            blocks_per_stage: FrameCNN basic blocks per stage.
            stem_stride: FrameCNN stem stride.
            norm: FrameCNN normalisation, "batch" or "group".
            embed_dim: width D of the fully connected per-frame feature (the GRU input).
            hidden_dim: GRU units H per layer.
            num_layers: stacked GRU layers.
            drop_rate: dropout after the per-frame FC layer, between GRU layers and before the clip heads.
            mean: per-channel input mean carried in `default_cfg`.
            std: per-channel input std, as `mean`.
        """
        super().__init__(num_classes=num_classes, image_size=image_size, num_frames=num_frames, embed_dim=embed_dim,
                         mean=mean, std=std)
        self.cnn = FrameCNN(widths, blocks_per_stage=blocks_per_stage, stem_stride=stem_stride, norm=norm)
        self.fc = nn.Sequential(nn.Linear(self.cnn.out_channels, embed_dim), nn.ReLU(inplace=True),
                                nn.Dropout(drop_rate))
        # Named `temporal` so that Predictor keeps it in float32 (classemo.precision.FLOAT32_MODULES).
        self.temporal = MaskedGRU(embed_dim, hidden_dim, num_layers=num_layers, dropout=drop_rate)
        self.hidden_dim = hidden_dim
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(hidden_dim, num_classes)
        self.va_head = nn.Linear(hidden_dim, 2)

    def forward_spatial(self, images: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """(N, 3, S, S) face crops -> `features` (N, D): pooled FrameCNN feature through the FC layer."""
        self._check_images(images)
        return {"features": self.fc(self.cnn.pooled(images))}

    def forward_temporal(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Clip outputs from per-frame features.

        Args:
            features: (B, T, D) per-frame features.
            mask: (B, T) bool, True = real frame (None: all real).

        Returns:
            `logits` (B, C) and `va` (B, 2) from the state at each clip's last real frame; `frame_logits` (B, T, C)
            and `frame_va` (B, T, 2) from every step's GRU output.
        """
        self._check_features(features)
        mask = self._check_mask(mask, features.shape[:2], features.device)
        steps, last = self.temporal(features, mask)  # (B, T, H), (B, H)
        # Dropout on the clip feature only: on (B, T, H) its draws would depend on how much padding follows a clip.
        clip = self.head_drop(last)
        return {
            "logits": self.head(clip),
            "va": torch.tanh(self.va_head(clip)),
            "frame_logits": self.head(steps),
            "frame_va": torch.tanh(self.va_head(steps)),
        }

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the class head (shared by clip and steps) for a new label set; the V/A head is kept."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.hidden_dim, num_classes)


@register_model
def cnn_gru_tiny(**kwargs: Any) -> CNNGRU:
    """CPU preset: 64 px, FrameCNN (32, 64, 128), FC to 128, two GRU layers of 128 units, 8 frames."""
    model_args = dict(image_size=64, num_frames=8, widths=(32, 64, 128), blocks_per_stage=1, stem_stride=1,
                      embed_dim=128, hidden_dim=128, num_layers=2, drop_rate=0.1)
    return preset(CNNGRU, "cnn_gru_tiny", model_args, kwargs)


@register_model
def cnn_gru_base(**kwargs: Any) -> CNNGRU:
    """GPU preset: 112 px, ResNet-18-sized FrameCNN, FC to 512, two GRU layers of 128 units (AffWildNet), 16 frames."""
    model_args = dict(image_size=112, num_frames=16, widths=(64, 128, 256, 512), blocks_per_stage=2, stem_stride=2,
                      embed_dim=512, hidden_dim=128, num_layers=2, drop_rate=0.3)
    return preset(CNNGRU, "cnn_gru_base", model_args, kwargs)
