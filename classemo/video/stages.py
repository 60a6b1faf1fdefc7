"""The stages of a video's analysis, separable so that the batch job can run them on different machines.

1. `FaceObserver` (CPU): decode, detect, track and crop; it yields `FaceChunk`s, the crops that go to the model
   together, and then holds the `Observation` (tracks, counts, timings).
2. `embed_chunks` (the spatial stream, almost all of the model's cost; a GPU where there is one), then
   `WindowAssembler`: the chunks in order, per-track windows of their features, through the temporal part.
3. `classemo.video.pipeline.write_analysis`: roles, timeline, summary and the three output files.

`classemo.video.pipeline.analyze_video` runs them one after the other in one process; jobs/analyze.py runs stage 1
as Ray tasks and stage 2a in an actor pool. The chunks are cut where `analyze_video` has always called the model, so
both make the same `embed_frames` and `predict_features` calls on the same inputs.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from classemo.analytics import PROB_PREFIX
from classemo.faces import FacePath
from classemo.faces.reading import FACE_COLUMNS, ReadingConfig, window_reading
from classemo.video.decode import FrameStream, VideoInfo
from classemo.video.track import Tracker, TrackerStats
from classemo.video.windows import Window, WindowBuffer

if TYPE_CHECKING:
    from classemo.predictor import Predictor


@dataclass
class FaceChunk:
    """Face crops that go to the model in one `embed_frames` call, and what the window buffer does after them.

    Chunks are cut where `analyze_video` has always called the model: when `embed_batch` crops wait, when a track
    ends (lost for longer than the tracker keeps it), and at the end of the video. Replaying them in order through
    `WindowAssembler` makes the same windows and the same model calls wherever the crops were embedded.
    """

    crops: list[np.ndarray]  # N face crops, (S, S, 3) uint8 RGB
    tracks: list[int]  # (N,) track id of each crop
    times: list[float]  # (N,) frame time of each crop, in seconds
    boxes: np.ndarray  # (N, 4) x, y, w, h of each face in the frame
    faces: np.ndarray  # (N, 5) score, yaw, pitch, roll, sharpness of each face (`FacePath.describe`)
    ended: list[int]  # tracks whose last window is cut after these crops, in the buffer's order
    final: bool = False  # the video's last chunk: every open track ends (`ended` is empty)
    features: np.ndarray | None = None  # (N, D) from `embed_chunks`; the crops are dropped then
    dtype: str = ""  # the spatial stream's compute dtype that made the features


@dataclass
class Observation:
    """What decoding, detection and tracking found in a video, besides the crops: all `write_analysis` needs."""

    info: VideoInfo
    decoded: int  # frames decoded (the stream's length)
    analysed: int  # frames sampled at the analysis rate
    truncated: bool
    stats: TrackerStats
    min_track_s: float  # the tracker's effective minimum track length
    centres: dict[int, np.ndarray]  # per track, (N, 2) face centres in pixels, for the region teacher rule
    frames_with_faces: int
    face_detections: int
    faces_too_small: int
    detector: str
    face: dict  # FaceSettings.to_dict() of the crops
    timings: dict[str, float]  # seconds in decode, detect, track, pose and crop


class FaceObserver:
    """Stage 1: decode a video at `fps`, detect, track and crop faces; iterate for the `FaceChunk`s. `observation`
    is set when the final chunk is yielded.

    Args:
        path: the video (or still image) on a local disk.
        face_path: how faces are found and cropped.
        tracker: a fresh `Tracker`.
        fps: analysis frame rate.
        embed_batch: face crops per chunk (crops of many tracks and frames go together).
        info: `probe_video(path)`, if the caller has it.
        crops_dir: store each crop as PNG under crops_dir/track_<id>/ (None: keep no face images).
        progress: show a tqdm bar over frames.
        stream: the frames, when they do not come from a file: an iterable of `(index, time_s, frame_bgr)` with
            `info`, `decoded`, `yielded`, `truncated` and `expected_samples`, such as `classemo.live.LiveSource`.
        max_wait_s: also yield a chunk (empty when no face came) once this much stream time has passed since the
            last one, so a live consumer hears from the stream even while nobody is in view (None: never).
        pose_every: head pose on every this many analysed frames (the first included). A window takes the median
            pose of its frames, and heads turn slower than 5 fps samples them, so 2 halves the landmark net's cost
            (most of the pose step, about 4 ms a face) and leaves each 4-frame window two poses.
    """

    def __init__(self, path: str | Path, face_path: FacePath, tracker: Tracker, *, fps: float, embed_batch: int = 64,
                 info: VideoInfo | None = None, crops_dir: Path | None = None, progress: bool = False,
                 stream: Any = None, max_wait_s: float | None = None, pose_every: int = 2) -> None:
        if pose_every < 1:
            raise ValueError(f"pose_every must be at least 1, got {pose_every}")
        self.stream = stream if stream is not None else FrameStream(path, fps=fps, info=info)
        self.face_path, self.tracker, self.embed_batch = face_path, tracker, embed_batch
        self.crops_dir, self.progress, self.name = crops_dir, progress, Path(str(path)).name
        self.max_wait_s, self.pose_every = max_wait_s, pose_every
        self.observation: Observation | None = None
        self.centres: dict[int, list] = defaultdict(list)  # per track, face centres so far (the region teacher rule)
        self.last_time = 0.0  # stream time of the newest frame read
        self.timings: dict[str, float] = defaultdict(float)  # seconds in decode, detect, track, pose and crop
        self.frames_with_faces = self.num_faces = 0
        self._too_small_before = face_path.too_small  # a model's face path is shared between videos

    def observed(self) -> Observation:
        """What has been found so far (at the end: `observation`); a live stream checkpoints it as it goes."""
        stats = self.tracker.finish()
        s, fp = self.stream, self.face_path
        return Observation(s.info, s.decoded, s.yielded, s.truncated, stats, self.tracker.min_duration(),
                           {tid: np.array(self.centres[tid]) for tid in stats.kept}, self.frames_with_faces,
                           self.num_faces, fp.too_small - self._too_small_before, type(fp.detector).__name__,
                           fp.settings.to_dict(), dict(self.timings))

    def __iter__(self) -> Iterator[FaceChunk]:
        import cv2
        from tqdm.auto import tqdm

        face_path, tracker = self.face_path, self.tracker
        timings, centres = self.timings, self.centres
        pending: list[tuple[int, float, np.ndarray, np.ndarray, np.ndarray]] = []  # (track, time, box, crop RGB, face)
        # The tracks with an open window buffer, in the buffer's order: the crops' tracks join when their chunk is
        # embedded, and leave when their last window is cut. Tracks with crops still pending are not yet open.
        open_tracks: dict[int, None] = {}
        last_chunk_t = 0.0
        analysed = 0  # frames read so far, for `pose_every`

        def chunk(ended: list[int], final: bool = False) -> FaceChunk:
            tids = [p[0] for p in pending]
            out = FaceChunk([p[3] for p in pending], tids, [p[1] for p in pending],
                            np.array([p[2] for p in pending], dtype=float).reshape(-1, 4),
                            np.array([p[4] for p in pending], dtype=float).reshape(-1, len(FACE_COLUMNS)), ended, final)
            open_tracks.update(dict.fromkeys(tids))
            for tid in ended:
                open_tracks.pop(tid, None)
            pending.clear()
            return out

        bar = tqdm(total=self.stream.expected_samples, disable=not self.progress, unit="frame", desc=self.name)
        it = iter(self.stream)
        while True:
            t0 = time.perf_counter()
            item = next(it, None)
            t1 = time.perf_counter()
            timings["decode"] += t1 - t0
            if item is None:
                break
            index, t, frame = item
            self.last_time = t
            found = face_path.detect(frame)
            t2 = time.perf_counter()
            timings["detect"] += t2 - t1
            boxes = np.array([[b.x, b.y, b.w, b.h] for b in found], dtype=float).reshape(-1, 4)
            ids = tracker.update(t, boxes, frame)
            t3 = time.perf_counter()
            timings["track"] += t3 - t2
            # (N, 5) score, head pose, sharpness; the pose on every `pose_every`-th analysed frame
            described = face_path.describe(frame, found, pose=analysed % self.pose_every == 0)
            analysed += 1
            t4 = time.perf_counter()
            timings["pose"] += t4 - t3
            if len(found):
                self.frames_with_faces += 1
                self.num_faces += len(found)
                for tid, b, box, face in zip(ids, found, boxes, described):
                    crop, _ = face_path.crop(frame, b)  # BGR, as in the converters
                    pending.append((tid, t, box, cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), face))
                    centres[tid].append(box[:2] + box[2:] / 2)
                    if self.crops_dir is not None:
                        d = self.crops_dir / f"track_{tid}"
                        d.mkdir(parents=True, exist_ok=True)
                        cv2.imwrite(str(d / f"{index:07d}.png"), crop)
            timings["crop"] += time.perf_counter() - t4
            ended = [tid for tid in open_tracks if t - tracker.tracks[tid].last_t > tracker.max_lost_s]
            waited = self.max_wait_s is not None and t - last_chunk_t >= self.max_wait_s
            if len(pending) >= self.embed_batch or ended or waited:
                last_chunk_t = t
                yield chunk(ended)
            bar.update(1)
        bar.close()
        self.observation = self.observed()
        yield chunk([], final=True)  # after `observation` is set, so a consumer can ship both together


def embed_chunks(predictor: "Predictor", chunks: list[FaceChunk], *, fuse: bool = False) -> float:
    """Stage 2a: the spatial features of each chunk's crops (set as `features`; the crops are dropped).

    Args:
        predictor: the model.
        chunks: chunks of one or more videos.
        fuse: one `embed_frames` call over all the chunks (bigger batches, for a GPU) rather than one per chunk as
            in `analyze_video`. Kernels differ with the batch size, so fused features differ from per-chunk ones
            in the last bits of float32 (about 1e-6).

    Returns:
        Seconds spent in the model.
    """
    t0 = time.perf_counter()
    groups = [chunks] if fuse else [[c] for c in chunks]
    for group in groups:
        crops = [crop for c in group for crop in c.crops]
        if not crops:
            feats = np.zeros((0, int(predictor.model.embed_dim)), np.float32)
        else:
            feats = predictor.embed_frames(crops)  # (N, D)
        for c, f in zip(group, np.split(feats, np.cumsum([len(c.crops) for c in group])[:-1])):
            c.features, c.crops, c.dtype = f, [], str(predictor.dtype).removeprefix("torch.")
    return time.perf_counter() - t0


class WindowAssembler:
    """Stage 2b: feed embedded chunks, in order, into per-track windows; predict each batch of finished windows.

    `rows` collects one timeline row per window (track, times, class probabilities, valence/arousal, box).
    """

    def __init__(self, predictor: "Predictor", window: int, stride: int,
                 reading: ReadingConfig | None = None) -> None:
        self.predictor = predictor
        self.reading = reading or ReadingConfig()
        self.buffer = WindowBuffer(window, stride)
        self.labels = list(predictor.labels)
        self.rows: list[dict] = []
        self.seconds = 0.0

    def add(self, chunk: FaceChunk) -> None:
        if chunk.features is None:
            raise ValueError("the chunk has not been embedded (embed_chunks)")
        # Each frame's box carries its face columns along, so a window knows its frames' pose and quality.
        boxes = np.hstack([chunk.boxes, chunk.faces])  # (N, 4 + 5)
        windows = [w for tid, t, box, f in zip(chunk.tracks, chunk.times, boxes, chunk.features)
                   if (w := self.buffer.add(tid, t, box, f))]
        if chunk.final:
            windows += self.buffer.flush_all()
        else:
            windows += [w for tid in chunk.ended if (w := self.buffer.flush(tid))]
        if windows:
            t0 = time.perf_counter()
            preds = self.predictor.predict_features([w.features for w in windows])
            self.seconds += time.perf_counter() - t0
            self.rows += _rows(windows, preds, self.labels, self.reading)


def _rows(windows: list[Window], preds: list, labels: list[str], reading: ReadingConfig) -> list[dict]:
    rows = []
    for w, p in zip(windows, preds):
        c = w.centre
        probs = np.asarray(p.probs, dtype=float)
        row = {"track": w.track_id, "time": float(w.times[c]), "t_start": float(w.times[0]),
               "t_end": float(w.times[-1]), "num_frames": len(w.times), "label": labels[int(probs.argmax())]}
        row.update({f"{PROB_PREFIX}{n}": float(v) for n, v in zip(labels, probs)})
        row.update(valence=float(p.valence), arousal=float(p.arousal))
        row.update(zip(("x", "y", "w", "h"), (float(v) for v in w.boxes[c, :4])))
        row.update(window_reading(w.boxes[:, 4:], w.boxes[:, :4], reading))
        rows.append(row)
    return rows
