"""The one loader and inference path of a trained unified model, shared by evaluation, batch video analysis and Serve.

`Predictor.from_checkpoint` takes a checkpoint directory (`config.json` + `model.pt`) or an MLflow URI
(`models:/classemo@champion`, `models:/classemo/3`, `runs:/<id>/model`; `classemo.model_source`); frames go through
the same transforms as in training (`classemo.data.transforms`), with the size, mean and std of the checkpoint's
`Preprocessing`, so there is no train/serve skew.

Precision (`classemo.precision`): `dtype="auto"` (the default) runs the spatial stream, which holds almost all of
the FLOPs, in bfloat16 where the hardware has it natively and it measures faster; the temporal encoder and the
clip/frame heads always run in float32.

Calibration: a checkpoint whose config holds a fitted `calibration` (`classemo.calibration`) has its clip and frame
logits divided by that temperature before the softmax, here and only here, so every caller reads calibrated
probabilities; the arg-max label is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from classemo.checkpoint import CheckpointError, calibration_temperature
from classemo.data.transforms import FrameError, frames_to_tensor, pad_clips, validate_frames
from classemo.faces import FaceBox, FacePath, FaceSettings, as_bgr, largest_face
from classemo.labels import LabelSet
from classemo.model_source import load_model_source
from classemo.precision import cast_for_inference, fold_batchnorm, inference_dtype
from classemo.preprocessing import Preprocessing

Clip = Sequence[np.ndarray] | np.ndarray


@dataclass
class ClipPrediction:
    """The model's outputs for one clip (T = the clip's real frames)."""

    probs: np.ndarray  # (C,) class probabilities of the clip
    label: str  # arg-max class name
    valence: float  # clip valence in [-1, 1]
    arousal: float  # clip arousal in [-1, 1]
    frame_probs: np.ndarray  # (T, C) per-frame class probabilities
    frame_valence: np.ndarray  # (T,)
    frame_arousal: np.ndarray  # (T,)
    logits: np.ndarray  # (C,) the clip's logits before the temperature: what `classemo.calibration` fits T on
    face: dict[str, Any] | None = None  # predict_image: the face's pose, attention state and readability

    def to_dict(self, labels: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-ready form; with `labels`, `probs` becomes a label -> probability mapping."""
        probs: Any = self.probs.tolist()
        if labels is not None:
            probs = dict(zip(labels, probs))
        return {
            "label": self.label,
            "probs": probs,
            "valence": self.valence,
            "arousal": self.arousal,
            "frame_probs": self.frame_probs.tolist(),
            "frame_valence": self.frame_valence.tolist(),
            "frame_arousal": self.frame_arousal.tolist(),
        }


class Predictor:
    """A loaded unified model plus its preprocessing: frames in, class probabilities and V/A out."""

    def __init__(
        self,
        model: nn.Module,
        config: Mapping[str, Any],
        *,
        device: str | torch.device | None = None,
        batch_size: int = 32,
        dtype: torch.dtype | str = "auto",
        info: Mapping[str, Any] | None = None,
        compile: bool = False,
    ) -> None:
        """Wrap an in-memory model and its checkpoint config (see `classemo.checkpoint.checkpoint_config`).

        The model is switched to eval mode and moved to `device`; where that would change its dtype, a copy is cast,
        so a caller's (e.g. training) model is never modified.

        Args:
            model: The unified model.
            config: Checkpoint config with `labels` and `preprocessing`.
            device: Torch device; CUDA when available, else CPU.
            batch_size: Clips per forward pass (frames per pass in `embed_frames`: batch_size x num_frames).
            dtype: Compute dtype of the spatial stream: "auto" (bf16 where the hardware has native bf16 and, on a
                CPU, `calibrate_cpu_dtype` measures it faster; else float32), a name ("float32", "bf16", ...) or a
                torch dtype. The temporal encoder and heads run in float32 whatever this is, and outputs are float32.
            info: Provenance: `source`, and from MLflow `registered_model`, `version`, `alias`, `run_id`.
            compile: Run the spatial stream through `torch.compile` (inductor). Measured fastest on CPU
                (docs/performance.md: 1.34x eager bf16 on classemo_tiny) but the first call of each new batch
                shape compiles for 30-90 s, so it is for long-running services and batch jobs, off by default.

        Raises:
            CheckpointError: For a config that is not a unified model's, or whose labels, preprocessing or
                calibration temperature do not fit.
        """
        if "labels" not in config or "preprocessing" not in config:
            raise CheckpointError("not a unified-model checkpoint: its config has no 'labels' / 'preprocessing'")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        try:
            self.preprocessing = Preprocessing.from_dict(config["preprocessing"])
        except (TypeError, ValueError) as e:  # PreprocessingError names the key; TypeError: not a mapping
            raise CheckpointError(f"invalid checkpoint preprocessing: {e}") from None
        self.config = dict(config)
        self.temperature = calibration_temperature(config)  # softmax(logits / T); 1.0: uncalibrated
        self.label_set = LabelSet.from_list(config["labels"])
        self.labels: list[str] = list(self.label_set.names)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.batch_size = batch_size
        module = getattr(model, "module", model)
        self.dtype, self.dtype_calibration = inference_dtype(dtype, self.device, module)
        self.model = cast_for_inference(module, self.device, self.dtype)
        # The spatial stream runs with its BatchNorms folded into the convs before them (folded in the weights' own
        # precision, then cast); `self.model` keeps the checkpoint's layers for callers that read its state dict.
        folded = fold_batchnorm(module)
        spatial = self.model if folded is module else cast_for_inference(folded, self.device, self.dtype)
        self.compiled = compile
        self._forward_spatial = torch.compile(spatial.forward_spatial) if compile else spatial.forward_spatial
        self.num_frames = int(self.model.num_frames)
        if int(self.model.num_classes) != len(self.labels):
            raise CheckpointError(f"the model has {self.model.num_classes} classes but the config lists "
                                  f"{len(self.labels)} labels {self.labels}")
        self.info: dict[str, Any] = dict(info or {})
        self.info.setdefault("architecture", config.get("model", {}).get("name"))
        self._face_path: FacePath | None = None

    @classmethod
    def from_checkpoint(
        cls,
        source: str | Path,
        *,
        device: str | torch.device | None = None,
        batch_size: int = 32,
        dtype: torch.dtype | str = "auto",
        compile: bool = False,
    ) -> "Predictor":
        """Load a checkpoint directory or an MLflow model (weights_only: no pickled code runs).

        Args:
            source: `"builtin"` (the model shipped in the package), a checkpoint directory,
                `models:/<name>@<alias>`, `models:/<name>/<version>`,
                `runs:/<run_id>/<path>` or another artifact URI MLflow can download (`load_model_source`).
            device: Torch device; CUDA when available, else CPU.
            batch_size: Clips per forward pass.
            dtype: Compute dtype of the spatial stream ("auto": bf16 where native, else float32).
            compile: `torch.compile` the spatial stream (see `__init__`).
        """
        model, config, info = load_model_source(source)
        return cls(model, config, device=device, batch_size=batch_size, dtype=dtype, info=info, compile=compile)

    # -- input checks ------------------------------------------------------------------------------------------

    def _clip_frames(self, clip: Clip, index: int) -> list[np.ndarray]:
        frames = validate_frames(clip, where=f"clip {index}")
        if len(frames) > self.num_frames:
            raise FrameError(f"clip {index} has {len(frames)} frames, more than the model's limit of "
                             f"num_frames={self.num_frames}; split or subsample it (select_frame_indices)")
        return frames

    def _to_tensor(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        p = self.preprocessing
        return frames_to_tensor(frames, image_size=p.image_size, mean=p.mean, std=p.std)

    # -- inference ---------------------------------------------------------------------------------------------

    def _predictions(self, out: Mapping[str, torch.Tensor], lengths: Sequence[int]) -> list[ClipPrediction]:
        logits = out["logits"].float()  # (B, C), before the temperature
        probs = (logits / self.temperature).softmax(-1).cpu().numpy()
        frame_probs = (out["frame_logits"].float() / self.temperature).softmax(-1).cpu().numpy()  # (B, T, C)
        logits = logits.cpu().numpy()
        va = out["va"].float().cpu().numpy()  # (B, 2)
        frame_va = out["frame_va"].float().cpu().numpy()  # (B, T, 2)
        return [
            ClipPrediction(
                probs=probs[b],
                label=self.labels[int(probs[b].argmax())],
                valence=float(va[b, 0]),
                arousal=float(va[b, 1]),
                frame_probs=frame_probs[b, :t],
                frame_valence=frame_va[b, :t, 0],
                frame_arousal=frame_va[b, :t, 1],
                logits=logits[b],
            )
            for b, t in enumerate(lengths)
        ]

    def _spatial_features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalised frames -> (N, D) float32 features λ, the spatial stream in `self.dtype`."""
        return self._forward_spatial(images.to(self.device, self.dtype))["features"].float()

    def _temporal(self, feats: torch.Tensor, mask: torch.Tensor, lengths: Sequence[int]) -> list[ClipPrediction]:
        """(B, T, D) features + (B, T) mask -> predictions, the temporal part in float32."""
        out = self.model.forward_temporal(feats.to(self.device, torch.float32), mask.to(self.device))
        return self._predictions(out, lengths)

    @torch.inference_mode()
    def predict(self, clips: Sequence[Clip]) -> list[ClipPrediction]:
        """Classify clips of face crops.

        Args:
            clips: Each clip is a sequence of `(H, W, 3)` uint8 RGB frames (any size; greyscale `(H, W)` is
                converted) or one `(T, H, W, 3)` array, with 1 <= T <= `num_frames`.

        Returns:
            One `ClipPrediction` per clip, in order.

        Raises:
            FrameError: Naming the clip (and frame) with zero frames, too many frames, or a wrong shape or dtype.
        """
        if isinstance(clips, np.ndarray) and clips.ndim != 5:
            raise FrameError(f"predict takes a list of clips (or a (B, T, H, W, 3) array), got an array of shape "
                             f"{clips.shape}; wrap a single clip as [clip]")
        checked = [self._clip_frames(clip, i) for i, clip in enumerate(clips)]  # fail before any compute
        results: list[ClipPrediction] = []
        for start in range(0, len(checked), self.batch_size):
            chunk = checked[start:start + self.batch_size]
            lengths = [len(f) for f in chunk]
            # Only real frames go through the spatial stream (as in the model's own forward); padding is added to
            # the features, which is the same computation as model(x, mask) with the temporal part in float32.
            feats = self._spatial_features(self._to_tensor([f for clip in chunk for f in clip]))  # (sum T_i, D)
            seqs, mask = pad_clips(list(torch.split(feats, lengths)), self.num_frames)  # (B, T, D), (B, T)
            results.extend(self._temporal(seqs, mask, lengths))
        return results

    @torch.inference_mode()
    def embed_frames(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Per-frame spatial features λ (the temporal encoder's input), so a video's frames are embedded once.

        Args:
            frames: `(H, W, 3)` uint8 RGB face crops (greyscale converted), any number.

        Returns:
            `(N, D)` float32 features; `(0, D)` for no frames.
        """
        if len(frames) == 0:
            return np.zeros((0, int(self.model.embed_dim)), np.float32)
        checked = validate_frames(frames, where="frames")
        step = self.batch_size * self.num_frames
        feats = []
        for start in range(0, len(checked), step):
            x = self._to_tensor(checked[start:start + step])  # (N, 3, S, S)
            feats.append(self._spatial_features(x).cpu())
        return torch.cat(feats).numpy()

    @torch.inference_mode()
    def predict_features(self, seqs: Sequence[np.ndarray]) -> list[ClipPrediction]:
        """Run only the temporal part on per-frame features from `embed_frames`.

        Args:
            seqs: One `(T_i, D)` feature array per clip, 1 <= T_i <= `num_frames`.

        Returns:
            One `ClipPrediction` per sequence, equal (to float tolerance) to `predict` on the same frames.
        """
        dim = int(self.model.embed_dim)
        tensors = []
        for i, seq in enumerate(seqs):
            arr = np.asarray(seq)
            if arr.ndim != 2 or arr.shape[1] != dim:
                raise FrameError(f"sequence {i}: expected features of shape (T, {dim}), got {arr.shape}")
            if not 1 <= arr.shape[0] <= self.num_frames:
                raise FrameError(f"sequence {i} has {arr.shape[0]} frames; the model takes 1 to "
                                 f"num_frames={self.num_frames}")
            if not np.issubdtype(arr.dtype, np.floating) or not np.isfinite(arr).all():
                raise FrameError(f"sequence {i}: features must be finite floats, got dtype {arr.dtype}")
            tensors.append(torch.from_numpy(arr.astype(np.float32)))
        results: list[ClipPrediction] = []
        for start in range(0, len(tensors), self.batch_size):
            chunk = tensors[start:start + self.batch_size]
            feats, mask = pad_clips(chunk, self.num_frames)  # (B, T, D), (B, T)
            results.extend(self._temporal(feats, mask, [len(c) for c in chunk]))
        return results

    # -- faces -------------------------------------------------------------------------------------------------

    @property
    def face_settings(self) -> FaceSettings:
        """How this model's training crops were made (the old Haar path for checkpoints that predate the record)."""
        return self.preprocessing.face_settings()

    def face_path(self) -> FacePath:
        """The face path of this model's training data (built on first use, then shared)."""
        if self._face_path is None:
            self._face_path = FacePath(self.face_settings)
        return self._face_path

    def largest_face_crops(self, images_rgb: Sequence[np.ndarray],
                           ) -> list[tuple[np.ndarray, FaceBox | None, dict[str, Any] | None]]:
        """Per whole RGB image, the crop of its largest face (RGB), its box and its reading (`read_faces`: pose,
        attention, readability); an image without a face is kept whole, with None for the box and the reading.

        Raises:
            FaceInputError: for an image the face path cannot read.
        """
        path = self.face_path()
        out: list[tuple[np.ndarray, FaceBox | None, dict[str, Any] | None]] = []
        for image in images_rgb:
            bgr = as_bgr(image[:, :, ::-1] if image.ndim == 3 and image.shape[2] == 3 else image)
            box = largest_face(path.detect(bgr))
            if box is None:
                out.append((np.ascontiguousarray(image), None, None))
                continue
            crop = path.crop(bgr, box)[0][:, :, ::-1]
            out.append((np.ascontiguousarray(crop), box, self.read_faces(bgr, [box])[0]))
        return out

    def read_faces(self, image_bgr: np.ndarray, boxes: Sequence[FaceBox]) -> list[dict[str, Any]]:
        """Per face of one image: head pose (yaw, pitch, roll in degrees), attention state (front, down, away,
        unknown), size, detector score, sharpness and whether its expression can be read (`readable`,
        `unread_reason`), by the face path's rules (`classemo.faces.reading`). NaN pose where it cannot be told."""
        from classemo.faces.reading import ReadingConfig, window_reading

        described = self.face_path().describe(image_bgr, list(boxes))  # (N, 5)
        cfg = ReadingConfig()
        return [window_reading(d[None], np.array([[b.x, b.y, b.w, b.h]], float), cfg)
                for d, b in zip(described, boxes)]

    def predict_image(self, image_bgr: np.ndarray) -> list[tuple[FaceBox, ClipPrediction]]:
        """Every face of a photo, through the model's face path, as a 1-frame clip: `(box, prediction)`, largest
        face first, each prediction's `face` holding the face's pose and readability (`read_faces`); an empty list
        for a photo without faces.

        Raises:
            FaceInputError: for an image the face path cannot read (empty, wrong dtype or channels).
        """
        faces = self.face_path().faces(image_bgr)
        preds = self.predict([[np.ascontiguousarray(f.crop[:, :, ::-1])] for f in faces]) if faces else []
        for p, reading in zip(preds, self.read_faces(as_bgr(image_bgr), [f.box for f in faces])):
            p.face = reading
        return [(f.box, p) for f, p in zip(faces, preds)]

    def __repr__(self) -> str:
        return (f"Predictor({self.info.get('architecture')}, labels={self.labels}, device={self.device}, "
                f"dtype={self.dtype}, source={self.info.get('source')!r})")


__all__ = ["ClipPrediction", "Predictor"]
