"""The clip-model contract that the loss, the trainer, `Predictor`, evaluation, `classemo analyze` and Serve rely on.

Every registered emotion model (the paper's `ClassEmoNet` and the comparison models of its Tables 1-2) is a
`ClipModel`: a per-frame **spatial** part and a per-clip **temporal** part, so that a video's frames are embedded
once and its overlapping windows only rerun the cheap temporal part (`Predictor.embed_frames`).

- `forward_spatial(images (N, 3, S, S))` -> dict with `features` (N, D): what one frame contributes. For a model
  whose temporal part needs more than a vector per frame (ConvLSTM's feature maps, LBVCNN's grey frames), D is the
  flattened map and the temporal part reshapes it.
- `forward_temporal(features (B, T, D), mask (B, T))` -> `logits` (B, C), `va` (B, 2) in [-1, 1],
  `frame_logits` (B, T, C) and `frame_va` (B, T, 2). Padded frames (mask False) must not change any output.
- `forward(frames (B, T, 3, S, S), mask)` runs the spatial part on real frames only, scatters its per-frame
  outputs back to (B, T, ...) with zeros at padding, and adds the temporal outputs.

Optional extras: `forward_peak(images)` (per-frame logits for the paper's M_H term on peak frames; without it M_H
is 0) and the paper's auxiliary per-frame heads (`vit_logits`, `vlad_logits`) listed in `frame_outputs`.
Attributes: `float32_modules` (the sub-modules `forward_temporal` uses, kept float32 by a bf16 `Predictor`),
`num_classes`, `image_size`, `num_frames`, `embed_dim` (= D), `default_cfg` (image_size, num_frames,
mean, std: the timm convention that `Preprocessing.for_model` reads), `pretrained_cfg` (None unless the model started
from pretrained weights), and `model_name` / `model_kwargs`, set by `preset` so that a checkpoint can rebuild it.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import torch
from einops import rearrange
from torch import nn

from classemo.preprocessing import DEFAULT_MEAN, DEFAULT_STD

M = TypeVar("M", bound="ClipModel")


class ClipModel(nn.Module):
    """Base class: input checks, the spatial -> temporal `forward`, and the attributes of the contract above."""

    frame_outputs: tuple[str, ...] = ("features",)  # spatial outputs that `forward` returns per frame (B, T, ...)
    # Sub-modules that `forward_temporal` uses: Predictor keeps them in float32 when the spatial part runs in bf16.
    float32_modules: tuple[str, ...] = ("temporal", "head", "va_head")
    pretrained_cfg: dict[str, Any] | None = None

    def __init__(self, *, num_classes: int, image_size: int, num_frames: int, embed_dim: int,
                 mean: tuple[float, float, float] | None = None,
                 std: tuple[float, float, float] | None = None) -> None:
        """Record the contract's attributes.

        Args:
            num_classes: discrete emotion classes C.
            image_size: square face-crop side S in pixels.
            num_frames: frames per clip T in training (the temporal part accepts any length 1..T and beyond).
            embed_dim: width D of the per-frame features that `forward_spatial` returns.
            mean: per-channel input mean carried in `default_cfg` (None: classemo.preprocessing.DEFAULT_MEAN).
            std: per-channel input std, as `mean`.
        """
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if num_frames < 1:
            raise ValueError(f"num_frames must be at least 1, got {num_frames}")
        if image_size < 8:
            raise ValueError(f"image_size must be at least 8 pixels, got {image_size}")
        self.num_classes = num_classes
        self.image_size = image_size
        self.num_frames = num_frames
        self.embed_dim = embed_dim
        self.default_cfg: dict[str, Any] = {
            "image_size": image_size, "num_frames": num_frames,
            "mean": tuple(mean or DEFAULT_MEAN), "std": tuple(std or DEFAULT_STD),
        }

    # ---- what a model implements ----------------------------------------------------------------------------

    def forward_spatial(self, images: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """(N, 3, S, S) normalised face crops -> at least `features` (N, D)."""
        raise NotImplementedError

    def forward_temporal(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """(B, T, D) per-frame features and (B, T) mask -> `logits`, `va`, `frame_logits`, `frame_va`."""
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        """Replace every class head for a new label set; the valence/arousal head is kept."""
        raise NotImplementedError

    # ---- shared -----------------------------------------------------------------------------------------------

    def forward(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor | None]:
        """Full model on a batch of clips.

        Args:
            frames: (B, T, 3, S, S) normalised face crops, padded to a common T.
            mask: (B, T) bool, True = real frame (None: all real). Every clip needs at least one real frame.

        Returns:
            The temporal outputs (`logits`, `va`, `frame_logits`, `frame_va`) plus each of `frame_outputs` as
            (B, T, ...) with zeros at padded frames (`features` always; None for an output the model switched off).
        """
        mask = self._check_frames(frames, mask)
        spatial = self.spatial_clips(frames, mask)
        out: dict[str, torch.Tensor | None] = dict(self.forward_temporal(spatial["features"], mask))
        out.update(spatial)
        return out

    def spatial_clips(self, frames: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Run the spatial part on real frames only and scatter `frame_outputs` to (B, T, ...), zeros at padding.

        Skipping padded frames saves compute and keeps them out of BatchNorm statistics, so padding cannot change
        any output even in training mode.
        """
        batch, num_frames = mask.shape
        flat = rearrange(frames, "b t c h w -> (b t) c h w")
        index = mask.reshape(-1).nonzero().squeeze(1)  # positions of real frames in (B * T)
        spatial = self.forward_spatial(flat[index])
        out: dict[str, torch.Tensor | None] = {}
        for key in self.frame_outputs:
            value = spatial.get(key)
            if value is None:
                out[key] = None
                continue
            full = value.new_zeros(batch * num_frames, *value.shape[1:]).index_copy(0, index, value)
            out[key] = full.reshape(batch, num_frames, *value.shape[1:])
        return out

    def forward_features(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-frame features (B, T, D) of clips (B, T, 3, S, S); zeros at padded frames."""
        mask = self._check_frames(frames, mask)
        return self.spatial_clips(frames, mask)["features"]

    # ---- input checks: a clear message instead of a shape error deep inside a conv ----------------------------

    def _check_images(self, images: torch.Tensor) -> None:
        """Raise ValueError unless images is a float (N, 3, S, S) batch with N >= 1."""
        expected = (3, self.image_size, self.image_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected or images.shape[0] == 0:
            raise ValueError(f"images must have shape (N>=1, {', '.join(map(str, expected))}), "
                             f"got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"images must be a normalised float tensor, got dtype {images.dtype}")

    def _check_features(self, features: torch.Tensor) -> None:
        """Raise ValueError unless features is (B, T, embed_dim)."""
        if features.ndim != 3 or features.shape[-1] != self.embed_dim:
            raise ValueError(f"features must have shape (B, T, {self.embed_dim}), got {tuple(features.shape)}")

    def _check_mask(self, mask: torch.Tensor | None, shape: torch.Size, device: torch.device) -> torch.Tensor:
        """Return a (B, T) bool mask (all True if None); raise ValueError on bad shape or a clip with no frame."""
        if mask is None:
            return torch.ones(tuple(shape), dtype=torch.bool, device=device)
        if tuple(mask.shape) != tuple(shape):
            raise ValueError(f"mask must have shape {tuple(shape)} (B, T), got {tuple(mask.shape)}")
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor (True = real frame), got dtype {mask.dtype}")
        empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"clips {empty} have no real frame (mask all False)")
        return mask

    def _check_frames(self, frames: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Validate clips (B, T, 3, S, S) and return the checked mask."""
        expected = (3, self.image_size, self.image_size)
        if frames.ndim != 5 or tuple(frames.shape[2:]) != expected or 0 in frames.shape[:2]:
            raise ValueError(f"frames must have shape (B, T, {', '.join(map(str, expected))}), "
                             f"got {tuple(frames.shape)}")
        if not frames.is_floating_point():
            raise ValueError(f"frames must be a normalised float tensor, got dtype {frames.dtype}")
        return self._check_mask(mask, frames.shape[:2], frames.device)


def preset(cls: Callable[..., M], name: str, model_args: dict[str, Any], kwargs: dict[str, Any]) -> M:
    """Build a registered preset as `cls(**dict(model_args, **kwargs))`, remembering how to rebuild it."""
    model = cls(**dict(model_args, **kwargs))
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model
