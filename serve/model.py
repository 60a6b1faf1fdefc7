"""The model deployment of the classemo Serve application: one `Predictor`, clips batched across requests.

It owns one `Predictor` (the same loader and preprocessing as training and batch analysis) and batches clips across
requests with `@serve.batch`; its `user_config` (model URI, batch size, batch wait) changes live through
`reconfigure`, which loads the new model before swapping it in, so requests keep being answered. It checks each
clip on its own, so one bad clip in a batch never fails its neighbours.
"""

import asyncio
import json
import logging
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve

from serve.schemas import ModelUserConfig

log = logging.getLogger("ray.serve")  # Serve's logger: the replica logs, with the replica's id


def _json_reading(reading: dict[str, Any]) -> dict[str, Any]:
    """A face's reading for JSON: NaN (a pose that could not be told) becomes null."""
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in reading.items()}


def _provenance(predictor: Any) -> dict[str, str | None]:
    """Where the served model came from (`Predictor.info`), as strings for JSON."""
    keys = ("source", "registered_model", "version", "alias", "run_id")
    return {k: None if predictor.info.get(k) is None else str(predictor.info[k]) for k in keys}


def analyze_upload(predictor: Any, path: Path, *, fps: float, out_dir: Path) -> tuple[dict[str, Any], Path]:
    """Analyse an uploaded video with `classemo.video.pipeline.analyze_video`: the one video path of the model
    replicas (inline videos) and of the video job runners (`serve.jobs`).

    Args:
        predictor: The loaded `Predictor`.
        path: The upload on local disk; its file name (not its folder) is what the client sees.
        fps: Analysis frame rate.
        out_dir: Folder for the pipeline's outputs.

    Returns:
        `{"summary", "timeline"}` (summary.json, with the per-person tracks, and the timeline rows) and the path of
        the HTML report.

    Raises:
        ValueError: `VideoError` for an undecodable video, or an invalid setting.
    """
    from classemo.video.pipeline import analyze_video

    result = analyze_video(path, predictor, out_dir=out_dir, fps=fps, progress=False)
    summary = json.loads(result.summary_path.read_text())
    summary.get("video", {})["path"] = path.name  # a server-side temp path means nothing to the client
    timeline = json.loads(result.timeline.to_json(orient="records"))
    return {"summary": summary, "timeline": timeline}, result.report_path


@serve.deployment(name="ClassEmoModel")
class ClassEmoModel:
    """Holds one `Predictor`; batches clips from concurrent requests into one forward pass."""

    def __init__(self, *, device: str | None = None, dtype: str = "auto", torch_threads: int | None = None,
                 debug: bool = False) -> None:
        """Start empty: the model is loaded by `reconfigure`, which Serve calls with the user_config.

        Args:
            device: Torch device; CUDA when available, else CPU.
            dtype: Predictor dtype: "auto" (bf16 on CPUs/GPUs that support it), "float32" or "bf16".
            torch_threads: `torch.set_num_threads` for this replica (replicas share the host's cores).
            debug: Allow `crash` (tests of replica recovery).
        """
        import torch

        if torch_threads:
            torch.set_num_threads(torch_threads)
        self._device = device
        self._dtype = dtype
        self._debug = debug
        self._predictor = None
        self._config: ModelUserConfig | None = None
        self._batch_sizes: Counter[int] = Counter()

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply a new user_config; a new model URI is loaded off the event loop, then swapped in atomically."""
        from classemo.predictor import Predictor

        cfg = ModelUserConfig.model_validate(user_config)
        if self._config is None or cfg.model_uri != self._config.model_uri or self._predictor is None:
            predictor = await asyncio.to_thread(Predictor.from_checkpoint, cfg.model_uri, device=self._device,
                                                dtype=self._dtype, batch_size=cfg.max_batch_size)
            self._predictor = predictor  # in-flight batches keep the old one they already hold
        else:
            self._predictor.batch_size = cfg.max_batch_size
        for method in (self.predict, self.embed, self.predict_windows):
            method.set_max_batch_size(cfg.max_batch_size)
            method.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)
        self._config = cfg
        log.info("classemo model %s ready (batch %d, wait %.3fs)", cfg.model_uri, cfg.max_batch_size,
                 cfg.batch_wait_timeout_s)

    def check_health(self) -> None:
        """Serve's health check: a replica without a loaded model is unhealthy and gets replaced."""
        if self._predictor is None:
            raise RuntimeError("no model loaded")

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def predict(self, clips: list[list[np.ndarray]]) -> list[dict[str, Any]]:
        """Predict a batch of clips (each a list of RGB frames); a clip that fails its checks gets an error entry.

        Args:
            clips: The clips that arrived within one batch window, one per caller.

        Returns:
            Per clip either `ClipPrediction.to_dict(labels)` plus `batch_size` and the model's provenance
            (`model`), or `{"error": message}`.
        """
        from classemo.data.transforms import FrameError, validate_frames

        predictor = self._predictor  # a reconfigure during this batch swaps the attribute, not this reference
        good: list[int] = []
        results: list[dict[str, Any]] = [{} for _ in clips]
        for i, clip in enumerate(clips):
            try:
                frames = validate_frames(clip, where="clip")
            except FrameError as e:
                results[i] = {"error": str(e)}
                continue
            if len(frames) > predictor.num_frames:
                results[i] = {"error": f"{len(frames)} frames, more than the model's limit of "
                                       f"num_frames={predictor.num_frames}; split or subsample the clip"}
            else:
                good.append(i)
        self._batch_sizes[len(clips)] += 1
        if good:
            preds = await asyncio.to_thread(predictor.predict, [clips[i] for i in good])
            model = _provenance(predictor)
            for i, pred in zip(good, preds):
                results[i] = {**pred.to_dict(predictor.labels), "batch_size": len(clips), "model": model}
        return results

    # -- live streams: every classroom's crops and windows come here, batched across classrooms ------------------

    def stream_spec(self) -> dict[str, Any]:
        """What a stream actor needs of this model besides its forward passes (`serve.streams.DeploymentPredictor`):
        labels, face settings, frames per window, feature width, dtype and provenance."""
        p = self._predictor
        if p is None:
            raise RuntimeError("no model loaded")
        return {"label_set": p.label_set, "face": p.face_settings.to_dict(), "num_frames": int(p.num_frames),
                "embed_dim": int(p.model.embed_dim), "dtype": str(p.dtype).removeprefix("torch."),
                "info": dict(p.info)}

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def embed(self, groups: list[list[np.ndarray]]) -> list[np.ndarray]:
        """Spatial features of face crops: each caller's crops (RGB, the model's face path) -> its (N, D) array.
        The crops of every caller in the batch window go through one `embed_frames` call."""
        predictor = self._predictor
        crops = [c for g in groups for c in g]
        self._batch_sizes[len(groups)] += 1
        feats = await asyncio.to_thread(predictor.embed_frames, crops) if crops else \
            np.zeros((0, int(predictor.model.embed_dim)), np.float32)
        return np.split(feats, np.cumsum([len(g) for g in groups])[:-1])

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def predict_windows(self, groups: list[list[np.ndarray]]) -> list[list[Any]]:
        """Per caller, its windows of spatial features ((T, D) each) -> their `ClipPrediction`s, in one batch."""
        predictor = self._predictor
        seqs = [s for g in groups for s in g]
        preds = await asyncio.to_thread(predictor.predict_features, seqs) if seqs else []
        bounds = np.cumsum([0, *[len(g) for g in groups]])
        return [preds[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def info(self) -> dict[str, Any]:
        """Model provenance, labels and preprocessing (GET /v1/model)."""
        p = self._predictor
        if p is None:
            raise RuntimeError("no model loaded")
        return {**_provenance(p), "architecture": p.info.get("architecture"), "labels": list(p.labels),
                "preprocessing": p.preprocessing.to_dict(),
                "num_frames": int(p.num_frames), "device": str(p.device),
                "dtype": str(p.dtype).removeprefix("torch."), "dtype_calibration": p.dtype_calibration}

    async def crop_faces(self, frames: list[np.ndarray]) -> tuple[list[np.ndarray], list[dict[str, int] | None]]:
        """The largest face of each whole RGB frame, cropped by this model's face path (its training data's detector,
        alignment, margin and size); a frame without a face is used whole, with None for its box."""
        found = await asyncio.to_thread(self._predictor.largest_face_crops, frames)
        return [c for c, _, _ in found], [None if b is None else {"x": b.x, "y": b.y, "w": b.w, "h": b.h,
                                                                  **_json_reading(r)} for _, b, r in found]

    def stats(self) -> dict[str, Any]:
        """Batch sizes this replica has run (GET /v1/stats)."""
        cfg = self._config
        return {"replica": serve.get_replica_context().replica_tag, "batches": sum(self._batch_sizes.values()),
                "clips": sum(k * v for k, v in self._batch_sizes.items()),
                "max_batch_size_seen": max(self._batch_sizes, default=0), "histogram": dict(self._batch_sizes),
                "max_batch_size": cfg.max_batch_size if cfg else 0,
                "batch_wait_timeout_s": cfg.batch_wait_timeout_s if cfg else 0.0}

    async def analyze_video(self, data: bytes, suffix: str, fps: float) -> dict[str, Any]:
        """Run `classemo.video.pipeline.analyze_video` on uploaded bytes with this replica's model.

        Returns:
            `summary` (as written to summary.json, which holds the per-person tracks) and `timeline` rows.
        """
        return await asyncio.to_thread(self._analyze_video, data, suffix, fps)

    def _analyze_video(self, data: bytes, suffix: str, fps: float) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="classemo-video-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(data)
            result, _ = analyze_upload(self._predictor, path, fps=fps, out_dir=Path(tmp) / "out")
        return result

    def crash(self) -> None:
        """Kill this replica's process (debug only): Serve must notice and replace it."""
        if not self._debug:
            raise RuntimeError("debug routes are disabled")
        os._exit(1)
