"""The one loader and inference path of a trained unified model, shared by evaluation, batch video analysis and Serve.

`Predictor.from_checkpoint` takes a checkpoint directory (`config.json` + `model.pt`) or an MLflow URI
(`models:/classemo@champion`, `models:/classemo/3`, `runs:/<id>/model`); frames go through the same transforms
as in training (`classemo.data.transforms`), so there is no train/serve skew.

Precision: `dtype="auto"` (the default) runs the spatial stream, which holds almost all of the FLOPs, with bfloat16
weights where that is faster: on a CUDA GPU that supports bf16, and on a CPU with native bf16 instructions
(AVX512-BF16 or AMX) when a short timing of this model's spatial stream at load shows bf16 beating float32 by 10%
(`calibrate_cpu_dtype`; on some AVX512-BF16 CPUs oneDNN's bf16 matmul is slower than fp32). Float32 elsewhere.
The temporal encoder and the clip/frame heads always run in float32: they cost little and their outputs are what
callers threshold. Measured speed and agreement are in docs/performance.md.
"""

from __future__ import annotations

import copy
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from classemo.checkpoint import CONFIG_FILE, MODEL_FILE, CheckpointError, load_checkpoint, save_checkpoint
from classemo.data.transforms import (
    DEFAULT_MEAN,
    DEFAULT_STD,
    FrameError,
    frames_to_tensor,
    pad_clips,
    validate_frames,
)
from classemo.faces import FaceBox, FacePath, FaceSettings, as_bgr, largest_face
from classemo.labels import LabelSet

# Sub-modules that only the temporal part uses; they stay float32 when the spatial stream runs in bf16.
FLOAT32_MODULES: tuple[str, ...] = ("temporal", "head", "va_head")
DTYPE_NAMES: dict[str, torch.dtype] = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                                       "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
MLFLOW_SCHEMES: tuple[str, ...] = ("models:/", "runs:/", "mlflow-artifacts:/", "s3://", "gs://", "http://", "https://")
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


def checkpoint_config(
    model: nn.Module,
    *,
    labels: LabelSet,
    train_config: Mapping[str, Any] | None = None,
    model_name: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    face: FaceSettings | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The unified model's checkpoint config (the contract in DESIGN.md).

    `face` is how the training crops were made (the dataset manifest's `face`); inference crops the same way. A
    config without it (older checkpoints, or training data without face settings) is read as the old Haar path.

    The registry name and kwargs come from the arguments when given, else from what `create_model` recorded on
    the model (`model_name`, `model_kwargs`). `num_classes`, `image_size` and `num_frames` are always taken from
    the model itself, so they cannot disagree with the weights.
    """
    module = getattr(model, "module", model)  # unwrap DDP
    cfg = dict(getattr(module, "default_cfg", {}) or {})
    name = model_name or getattr(module, "model_name", None)
    if not name:
        raise CheckpointError("cannot tell the model's registry name: build it with create_model or pass model_name=")
    kwargs = dict(model_kwargs if model_kwargs is not None else getattr(module, "model_kwargs", {}))
    kwargs.update(num_classes=int(module.num_classes), image_size=int(module.image_size),
                  num_frames=int(module.num_frames))
    if len(labels) != kwargs["num_classes"]:
        raise CheckpointError(
            f"{len(labels)} labels {list(labels.names)} for a model with {kwargs['num_classes']} classes"
        )
    preprocessing: dict[str, Any] = {
        "image_size": int(module.image_size),
        "mean": list(cfg.get("mean", DEFAULT_MEAN)),
        "std": list(cfg.get("std", DEFAULT_STD)),
        "num_frames": int(module.num_frames),
    }
    if face is not None:
        preprocessing["face"] = (face if isinstance(face, FaceSettings) else FaceSettings(**face)).to_dict()
    return {
        "model": {"name": name, "kwargs": kwargs},
        "labels": labels.to_list(),
        "preprocessing": preprocessing,
        "train_config": dict(train_config or {}),
    }


def save_model_checkpoint(
    model: nn.Module,
    directory: str | Path,
    *,
    labels: LabelSet,
    train_config: Mapping[str, Any] | None = None,
    model_name: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    face: FaceSettings | Mapping[str, Any] | None = None,
) -> Path:
    """Write a unified-model checkpoint that `Predictor.from_checkpoint` loads; returns the directory.

    Args:
        model: The unified model (DDP-wrapped is fine).
        directory: Target directory, created if needed.
        labels: The label set the model was trained on (index i = class i).
        train_config: The resolved training config, saved for provenance.
        model_name: Registry name; defaults to the `model_name` that `create_model` recorded.
        model_kwargs: `create_model` kwargs; defaults to the recorded `model_kwargs`.
        face: How the training crops were made (`FaceSettings` or its dict); None for the old Haar path.
    """
    config = checkpoint_config(model, labels=labels, train_config=train_config, model_name=model_name,
                               model_kwargs=model_kwargs, face=face)
    return save_checkpoint(model, config, directory)


def cpu_supports_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU has native bf16 matrix instructions (AVX512-BF16 or AMX-BF16).

    Reads the kernel's CPU flags; where there is no /proc/cpuinfo, falls back to PyTorch's dispatch level (which
    names AMX but not AVX512-BF16, so that fallback can only under-report).
    """
    path = Path(cpuinfo)
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return bool(flags & {"avx512_bf16", "amx_bf16"})
    return "AMX" in torch.backends.cpu.get_cpu_capability()


def resolve_dtype(dtype: torch.dtype | str, device: torch.device) -> torch.dtype:
    """The spatial stream's compute dtype for `dtype` (a torch dtype, a name like "bf16", or "auto") on `device`.

    "auto" is the candidate: bfloat16 on a CPU with native bf16 instructions (`cpu_supports_bf16`) or a CUDA GPU
    that supports bf16, else float32. On a CPU, `Predictor` then keeps bf16 only if `calibrate_cpu_dtype` finds it
    faster for the model at hand.

    Raises:
        ValueError: For an unknown name or a non-floating-point dtype.
    """
    if isinstance(dtype, str):
        if dtype == "auto":
            if device.type == "cuda":
                return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
            return torch.bfloat16 if device.type == "cpu" and cpu_supports_bf16() else torch.float32
        if dtype not in DTYPE_NAMES:
            raise ValueError(f"unknown dtype {dtype!r}; expected 'auto' or one of {sorted(DTYPE_NAMES)}")
        return DTYPE_NAMES[dtype]
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be 'auto', a dtype name or a floating-point torch dtype, got {dtype!r}")
    return dtype


CALIBRATION_MIN_SPEEDUP = 1.1  # "auto" keeps bf16 on a CPU only if the spatial stream is at least this much faster
_calibrations: dict[tuple, dict[str, Any]] = {}


def calibrate_cpu_dtype(model: nn.Module, image_size: int, *, frames: int = 16, repeats: int = 3) -> dict[str, Any]:
    """Time `model.forward_spatial` on `frames` frames in float32 and in bf16 weights; pick the faster.

    bf16 is chosen only when it is at least `CALIBRATION_MIN_SPEEDUP` times faster (medians of `repeats` after a
    warm-up), so that timing noise never trades float32's precision for no real gain. The result is cached per
    architecture, input size and thread count for the life of the process (a Serve replica reloading a model, or
    tests building many Predictors, time it once).

    Returns:
        `{"dtype": "bf16" | "float32", "float32_ms": ..., "bf16_ms": ..., "frames": frames}`.
    """
    key = (type(model).__name__, tuple((n, tuple(p.shape)) for n, p in model.named_parameters()), image_size, frames,
           torch.get_num_threads())
    if key in _calibrations:
        return _calibrations[key]
    x = torch.randn(frames, 3, image_size, image_size)
    timings = {}
    for name, dt in (("float32", torch.float32), ("bf16", torch.bfloat16)):
        m = copy.deepcopy(model).to(dtype=dt).eval()
        xi = x.to(dt)
        with torch.inference_mode():
            m.forward_spatial(xi)  # warm-up: oneDNN picks and caches its kernels for this shape
            runs = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                m.forward_spatial(xi)
                runs.append(time.perf_counter() - t0)
        timings[name] = 1e3 * sorted(runs)[len(runs) // 2]
        del m
    fast = timings["float32"] >= CALIBRATION_MIN_SPEEDUP * timings["bf16"]
    result = {"dtype": "bf16" if fast else "float32", "float32_ms": round(timings["float32"], 2),
              "bf16_ms": round(timings["bf16"], 2), "frames": frames}
    _calibrations[key] = result
    return result


def is_mlflow_uri(source: str | Path) -> bool:
    """Whether `source` names an MLflow model / run / remote artifact rather than a local directory."""
    return isinstance(source, str) and source.startswith(MLFLOW_SCHEMES)


def find_checkpoint_dir(root: str | Path) -> Path:
    """The directory holding `config.json` and `model.pt` at or below `root` (an MLflow model keeps it under
    `artifacts/checkpoint`)."""
    root = Path(root)
    if (root / CONFIG_FILE).is_file() and (root / MODEL_FILE).is_file():
        return root
    found = sorted(
        (p.parent for p in root.rglob(CONFIG_FILE) if (p.parent / MODEL_FILE).is_file()),
        key=lambda d: ("checkpoint" not in d.relative_to(root).parts, len(d.parts), str(d)),
    )
    if not found:
        raise CheckpointError(f"no checkpoint ({CONFIG_FILE} + {MODEL_FILE}) found in {root}")
    return found[0]


def _mlflow_info(uri: str, tracking: str) -> tuple[dict[str, Any], str]:
    """Registered name, version, alias and run id behind an MLflow URI, as far as the URI names them, and the
    concrete artifact URI to download. A registered version is resolved here with an explicit client, because
    `download_artifacts` would resolve `models:/` through MLflow's process-global registry URI, which another
    caller in the same process may have pointed elsewhere."""
    from mlflow import MlflowClient

    info: dict[str, Any] = {"registered_model": None, "version": None, "alias": None, "run_id": None}
    if m := re.match(r"^runs:/([^/]+)", uri):
        info["run_id"] = m.group(1)
        return info, uri
    m = re.match(r"^models:/([^/@]+)(?:@([^/]+)|/([^/]+))?", uri)
    if not m:
        return info, uri
    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    name, alias, version = m.groups()
    info["registered_model"] = name
    if alias:
        mv = client.get_model_version_by_alias(name, alias)
        info["alias"] = alias
    elif version and version.isdigit():
        mv = client.get_model_version(name, version)
    else:
        return info, uri
    info["version"], info["run_id"] = int(mv.version), mv.run_id
    return info, client.get_model_version_download_uri(name, mv.version)


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
        """Wrap an in-memory model and its checkpoint config (see `checkpoint_config`).

        The model is switched to eval mode and moved to `device`; where that would change its dtype, a copy is cast,
        so a caller's (e.g. training) model is never modified.

        Args:
            model: The unified model.
            config: Checkpoint config with `labels` and `preprocessing`.
            device: Torch device; CUDA when available, else CPU.
            batch_size: Clips per forward pass (frames per pass in `embed_frames`: batch_size x num_frames).
            dtype: Compute dtype of the spatial stream: "auto" (bf16 where the hardware has native bf16 and, on a
                CPU, `calibrate_cpu_dtype` measures it faster; else float32), a name ("float32", "bf16", ...) or a
                torch dtype. The temporal
                encoder and heads run in float32 whatever this is, and outputs are float32.
            info: Provenance: `source`, and from MLflow `registered_model`, `version`, `alias`, `run_id`.
            compile: Run the spatial stream through `torch.compile` (inductor). Measured fastest on CPU
                (docs/performance.md: 1.34x eager bf16 on classemo_tiny) but the first call of each new batch
                shape compiles for 30-90 s, so it is for long-running services and batch jobs, off by default.
        """
        if "labels" not in config or "preprocessing" not in config:
            raise CheckpointError("not a unified-model checkpoint: its config has no 'labels' / 'preprocessing'")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.config = dict(config)
        self.label_set = LabelSet.from_list(config["labels"])
        self.labels: list[str] = list(self.label_set.names)
        self.preprocessing: dict[str, Any] = dict(config["preprocessing"])
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size = batch_size
        module = getattr(model, "module", model)
        self.dtype_calibration: dict[str, Any] | None = None
        if dtype == "auto" and self.device.type == "cpu" and self.dtype == torch.bfloat16:
            self.dtype_calibration = calibrate_cpu_dtype(module, int(module.image_size))
            self.dtype = DTYPE_NAMES[self.dtype_calibration["dtype"]]
        if next(module.parameters()).dtype != self.dtype:
            module = copy.deepcopy(module)  # casting is in place; leave the caller's (e.g. training) model alone
        self.model = module.to(device=self.device, dtype=self.dtype).eval()
        for name in FLOAT32_MODULES:
            if (sub := getattr(self.model, name, None)) is not None:
                sub.float()
        self.compiled = compile
        self._forward_spatial = torch.compile(self.model.forward_spatial) if compile else self.model.forward_spatial
        self.num_frames = int(self.model.num_frames)
        if int(self.model.num_classes) != len(self.labels):
            raise CheckpointError(f"the model has {self.model.num_classes} classes but the config lists "
                                  f"{len(self.labels)} labels {self.labels}")
        self.info: dict[str, Any] = dict(info or {})
        self.info.setdefault("architecture", config.get("model", {}).get("name"))
        try:
            self.face_settings = FaceSettings.from_dict(self.preprocessing.get("face"),
                                                        size=int(self.preprocessing["image_size"]))
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"the checkpoint's face settings are invalid: {e}") from None
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
            source: A checkpoint directory, `models:/<name>@<alias>`, `models:/<name>/<version>`,
                `runs:/<run_id>/<path>` or another artifact URI MLflow can download. MLflow URIs use
                `classemo.tracking.tracking_uri()` for tracking and registry.
            device: Torch device; CUDA when available, else CPU.
            batch_size: Clips per forward pass.
            dtype: Compute dtype of the spatial stream ("auto": bf16 where native, else float32).
            compile: `torch.compile` the spatial stream (see `__init__`).
        """
        info: dict[str, Any] = {"source": str(source)}
        if not is_mlflow_uri(source):
            path = Path(source)
            if not path.is_dir():
                raise CheckpointError(f"checkpoint directory {path} does not exist (or give an MLflow models:/ URI)")
            model, config = load_checkpoint(find_checkpoint_dir(path), map_location="cpu")
            return cls(model, config, device=device, batch_size=batch_size, dtype=dtype, info=info, compile=compile)

        import mlflow.artifacts
        from mlflow.exceptions import MlflowException

        from classemo.tracking import tracking_uri

        uri = tracking_uri()
        try:
            found, artifact_uri = _mlflow_info(str(source), uri)
            info.update(found)
            with tempfile.TemporaryDirectory(prefix="classemo-model-") as tmp:
                local = mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=tmp,
                                                            tracking_uri=uri, registry_uri=uri)
                # Weights are read into memory here, so the download can go when the block ends.
                model, config = load_checkpoint(find_checkpoint_dir(local), map_location="cpu")
        except MlflowException as e:
            raise CheckpointError(f"cannot load {source} from MLflow at {uri}: {e.message}") from None
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
        return frames_to_tensor(frames, image_size=int(p["image_size"]), mean=p["mean"], std=p["std"])

    # -- inference ---------------------------------------------------------------------------------------------

    def _predictions(self, out: Mapping[str, torch.Tensor], lengths: Sequence[int]) -> list[ClipPrediction]:
        probs = out["logits"].float().softmax(-1).cpu().numpy()  # (B, C)
        va = out["va"].float().cpu().numpy()  # (B, 2)
        frame_probs = out["frame_logits"].float().softmax(-1).cpu().numpy()  # (B, T, C)
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

    def face_path(self) -> FacePath:
        """The face path of this model's training data (built on first use, then shared)."""
        if self._face_path is None:
            self._face_path = FacePath(self.face_settings)
        return self._face_path

    def largest_face_crops(self, images_rgb: Sequence[np.ndarray]) -> list[tuple[np.ndarray, FaceBox | None]]:
        """Per whole RGB image, the crop of its largest face (RGB) and its box; an image without a face is kept
        whole, with None for the box.

        Raises:
            FaceInputError: for an image the face path cannot read.
        """
        path = self.face_path()
        out: list[tuple[np.ndarray, FaceBox | None]] = []
        for image in images_rgb:
            bgr = as_bgr(image[:, :, ::-1] if image.ndim == 3 and image.shape[2] == 3 else image)
            box = largest_face(path.detect(bgr))
            crop = image if box is None else path.crop(bgr, box)[0][:, :, ::-1]
            out.append((np.ascontiguousarray(crop), box))
        return out

    def predict_image(self, image_bgr: np.ndarray) -> list[tuple[FaceBox, ClipPrediction]]:
        """Every face of a photo, through the model's face path, as a 1-frame clip: `(box, prediction)`, largest
        face first; an empty list for a photo without faces.

        Raises:
            FaceInputError: for an image the face path cannot read (empty, wrong dtype or channels).
        """
        faces = self.face_path().faces(image_bgr)
        preds = self.predict([[np.ascontiguousarray(f.crop[:, :, ::-1])] for f in faces]) if faces else []
        return [(f.box, p) for f, p in zip(faces, preds)]

    def __repr__(self) -> str:
        return (f"Predictor({self.info.get('architecture')}, labels={self.labels}, device={self.device}, "
                f"dtype={self.dtype}, source={self.info.get('source')!r})")


__all__ = [
    "ClipPrediction",
    "Predictor",
    "checkpoint_config",
    "calibrate_cpu_dtype",
    "cpu_supports_bf16",
    "find_checkpoint_dir",
    "is_mlflow_uri",
    "resolve_dtype",
    "save_model_checkpoint",
]
