"""Frame Attention Networks of D. Meng, X. Peng, K. Wang and Y. Qiao, "Frame attention networks for facial
expression recognition in videos", IEEE International Conference on Image Processing (ICIP), 2019.

Published design: a feature embedding module (ResNet-18) turns each frame into f_i; a frame attention module then
weighs the frames twice. Self-attention: alpha_i = sigmoid(f_i^T q0), and the global feature
f_v' = sum_i alpha_i f_i / sum_i alpha_i. Relation-attention: beta_i = sigmoid([f_i : f_v']^T q1), and the video
feature f_v = sum_i alpha_i beta_i [f_i : f_v'] / sum_i alpha_i beta_i (width 2D), which goes through dropout to a
fully connected classifier. Here the embedding is the shared `FrameCNN` (ResNet-18-sized in the base preset), every
sum runs over a clip's real frames only, and the same heads (class and tanh valence/arousal) also read each
frame's [f_i : f_v'], so the per-frame timeline shows what each frame says in the context of its clip. The
normalised weights alpha_i beta_i / sum alpha beta come out as `frame_weights` for inspection.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from einops import repeat
from torch import nn

from classemo.models.base import ClipModel, preset
from classemo.models.frame_cnn import FrameCNN, Norm
from classemo.models.registry import register_model


def _normalise(log_weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """w_i / sum_j w_j over real frames from log w (B, T); exactly 0 at padding.

    A softmax of log-sigmoids is the published ratio of sigmoids, without the 0 / 0 of saturated sigmoids.
    """
    return log_weights.masked_fill(~mask, float("-inf")).softmax(dim=-1)


class FrameAttention(nn.Module):
    """FAN's frame attention module: self-attention (alpha, q0) then relation-attention (beta, q1)."""

    def __init__(self, dim: int) -> None:
        """Build the two attention vectors.

        Args:
            dim: width D of the frame features f_i.
        """
        super().__init__()
        self.q0 = nn.Linear(dim, 1, bias=False)  # alpha_i = sigmoid(f_i^T q0)
        self.q1 = nn.Linear(2 * dim, 1, bias=False)  # beta_i = sigmoid([f_i : f_v']^T q1)

    def forward(self, f: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Attend over the real frames of each clip.

        Args:
            f: (B, T, D) frame features.
            mask: (B, T) bool, True = real frame; every clip needs at least one.

        Returns:
            `pairs` (B, T, 2D) = [f_i : f_v'], `video` (B, 2D) = f_v, `alpha` and `beta` (B, T) (zeros at padding)
            and `weights` (B, T) = alpha_i beta_i / sum alpha beta over real frames (zeros at padding).
        """
        f = f.masked_fill(~mask.unsqueeze(-1), 0.0)  # padding is ignored even if it holds inf or NaN
        score0 = self.q0(f).squeeze(-1)  # (B, T)
        global_feature = torch.einsum("bt,btd->bd", _normalise(F.logsigmoid(score0), mask), f)  # f_v' (B, D)
        pairs = torch.cat([f, repeat(global_feature, "b d -> b t d", t=f.shape[1])], dim=-1)  # (B, T, 2D)
        score1 = self.q1(pairs).squeeze(-1)  # (B, T)
        weights = _normalise(F.logsigmoid(score0) + F.logsigmoid(score1), mask)  # log(alpha beta), normalised
        real = mask.to(f.dtype)
        return {
            "pairs": pairs,
            "video": torch.einsum("bt,btd->bd", weights, pairs),
            "alpha": torch.sigmoid(score0) * real,
            "beta": torch.sigmoid(score1) * real,
            "weights": weights,
        }


class FAN(ClipModel):
    """Frame Attention Network: FrameCNN embedding per frame, frame attention over the clip, heads on f_v."""

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
        drop_rate: float = 0.0,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
    ) -> None:
        """Build the network.

        Args:
            num_classes: discrete emotion classes C.
            image_size: square face-crop side S in pixels.
            num_frames: frames per clip T in training (attention runs any length).
            widths: FrameCNN channels per stage; the last is the feature width D.
            blocks_per_stage: FrameCNN basic blocks per stage.
            stem_stride: FrameCNN stem stride.
            norm: FrameCNN normalisation, "batch" or "group".
            drop_rate: dropout on the video feature f_v before the heads.
            mean: per-channel input mean carried in `default_cfg`.
            std: per-channel input std, as `mean`.
        """
        cnn = FrameCNN(widths, blocks_per_stage=blocks_per_stage, stem_stride=stem_stride, norm=norm)
        super().__init__(num_classes=num_classes, image_size=image_size, num_frames=num_frames,
                         embed_dim=cnn.out_channels, mean=mean, std=std)
        self.cnn = cnn
        # Named `temporal` so that Predictor keeps it in float32 (classemo.precision.FLOAT32_MODULES).
        self.temporal = FrameAttention(self.embed_dim)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(2 * self.embed_dim, num_classes)
        self.va_head = nn.Linear(2 * self.embed_dim, 2)

    def forward_spatial(self, images: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """(N, 3, S, S) face crops -> `features` (N, D) = f_i, the pooled FrameCNN feature."""
        self._check_images(images)
        return {"features": self.cnn.pooled(images)}

    def forward_temporal(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Clip outputs from per-frame features.

        Args:
            features: (B, T, D) frame features f_i.
            mask: (B, T) bool, True = real frame (None: all real).

        Returns:
            `logits` (B, C) and `va` (B, 2) from f_v; `frame_logits` (B, T, C) and `frame_va` (B, T, 2) from each
            frame's [f_i : f_v']; `frame_weights` (B, T), the normalised alpha_i beta_i (zeros at padding).
        """
        self._check_features(features)
        mask = self._check_mask(mask, features.shape[:2], features.device)
        att = self.temporal(features, mask)
        # Dropout on f_v only: on (B, T, 2D) its draws would depend on how much padding follows a clip.
        video = self.head_drop(att["video"])
        return {
            "logits": self.head(video),
            "va": torch.tanh(self.va_head(video)),
            "frame_logits": self.head(att["pairs"]),
            "frame_va": torch.tanh(self.va_head(att["pairs"])),
            "frame_weights": att["weights"],
        }

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the class head (shared by clip and frames) for a new label set; the V/A head is kept."""
        self.num_classes = num_classes
        self.head = nn.Linear(2 * self.embed_dim, num_classes)


@register_model
def fan_tiny(**kwargs: Any) -> FAN:
    """CPU preset: 64 px, FrameCNN (32, 64, 128) so D = 128 and f_v has width 256, 8 frames."""
    model_args = dict(image_size=64, num_frames=8, widths=(32, 64, 128), blocks_per_stage=1, stem_stride=1,
                      drop_rate=0.1)
    return preset(FAN, "fan_tiny", model_args, kwargs)


@register_model
def fan_base(**kwargs: Any) -> FAN:
    """GPU preset: 112 px, ResNet-18-sized FrameCNN (D = 512, as published), dropout 0.5 before the heads, 16 frames."""
    model_args = dict(image_size=112, num_frames=16, widths=(64, 128, 256, 512), blocks_per_stage=2, stem_stride=2,
                      drop_rate=0.5)
    return preset(FAN, "fan_base", model_args, kwargs)
