"""Classroom video analysis: frames -> faces -> tracks -> per-window emotions -> Table 3/4 metrics -> report.

The hot loop holds one frame, the open tracks' window buffers and a small chunk of face crops waiting for the
model, so memory does not grow with the video's length (only the timeline rows do, a few hundred bytes a window).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from classemo.analytics import PROB_PREFIX, AnalyticsConfig, summarize
from classemo.video.decode import FrameStream, VideoError, probe_video
from classemo.faces import FacePath, FaceSettings, warn_if_different
from classemo.video.track import Track, Tracker
from classemo.video.windows import Window, WindowBuffer

if TYPE_CHECKING:
    from classemo.predictor import Predictor

log = logging.getLogger(__name__)

PRIVACY_NOTE = ("Track IDs are per-video numbers, not identities. No face images are stored unless --save-crops "
                "was given; the timeline holds only boxes, times, class probabilities and valence/arousal.")


@dataclass
class AnalysisResult:
    """What `analyze_video` produced: the timeline, the summary and the paths of the written files."""

    out_dir: Path
    timeline: pd.DataFrame
    summary: dict
    timeline_path: Path
    summary_path: Path
    report_path: Path
    tracks: dict[int, dict] = field(default_factory=dict)  # kept track id -> role, first/last time, frames
    dropped: dict[int, dict] = field(default_factory=dict)  # dropped (too short) track id -> first/last time, frames


def parse_teacher(spec: str | int | None) -> tuple[str, Any]:
    """Parse a teacher spec: "auto" (heuristic), "none", an int track id, or "region:x0,y0,x1,y1" (frame fractions).

    Raises:
        ValueError: for anything else, naming the accepted forms.
    """
    if spec is None or spec == "none":
        return "none", None
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return "id", int(spec)
    if spec == "auto":
        return "auto", None
    m = re.fullmatch(r"region:([\d.]+),([\d.]+),([\d.]+),([\d.]+)", str(spec))
    if m:
        x0, y0, x1, y1 = (float(g) for g in m.groups())
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise ValueError(f"teacher region must be fractions 0 <= x0 < x1 <= 1, 0 <= y0 < y1 <= 1; got {spec!r}")
        return "region", (x0, y0, x1, y1)
    raise ValueError(f"teacher must be 'auto', 'none', a track id or 'region:x0,y0,x1,y1' (fractions); got {spec!r}")


def assign_roles(tracks: dict[int, Track], centres: dict[int, np.ndarray], frame_size: tuple[int, int],
                 teacher: str | int | None = "auto") -> dict[int, str]:
    """Label each kept track "teacher" or "student".

    Heuristic ("auto"): among tracks seen for at least a quarter of the longest track's frames, the teacher
    maximises (mean face area / largest mean face area) + (mobility / largest mobility), mobility being the
    spread of the face centre around its mean position, in face widths (`Track.mobility`). The teacher usually
    stands nearer the camera than the students and moves about while they sit. With a single person nobody is
    called the teacher, because a close-up of one face says nothing about its role (give --teacher 0 if it is).

    Args:
        tracks: kept tracks by id.
        centres: per track, (N, 2) face-centre positions in pixels, for the region rule.
        frame_size: (width, height) of the frames.
        teacher: see `parse_teacher`.
    """
    kind, arg = parse_teacher(teacher)
    roles = {tid: "student" for tid in tracks}
    chosen: int | None = None
    if kind == "id":
        if arg not in tracks:
            log.warning("teacher track %s is not among the kept tracks %s; everyone is a student", arg,
                        sorted(tracks))
        else:
            chosen = arg
    elif kind == "region" and tracks:
        x0, y0, x1, y1 = arg
        w, h = frame_size
        share = {}
        for tid, c in centres.items():
            inside = (c[:, 0] >= x0 * w) & (c[:, 0] <= x1 * w) & (c[:, 1] >= y0 * h) & (c[:, 1] <= y1 * h)
            share[tid] = float(inside.mean()) * len(c)  # frames inside the region
        best = max(share, key=share.get)
        chosen = best if share[best] > 0 else None
    elif kind == "auto" and len(tracks) >= 2:
        longest = max(tr.hits for tr in tracks.values())
        eligible = {tid: tr for tid, tr in tracks.items() if tr.hits >= 0.25 * longest}
        area = {tid: tr.mean_area for tid, tr in eligible.items()}
        mob = {tid: tr.mobility for tid, tr in eligible.items()}
        max_area, max_mob = max(area.values()), max(mob.values())
        score = {tid: area[tid] / max_area + (mob[tid] / max_mob if max_mob > 0 else 0.0) for tid in eligible}
        chosen = max(score, key=score.get)
    if chosen is not None:
        roles[chosen] = "teacher"
    return roles


class _Model:
    """Batches face crops into `Predictor.embed_frames` and windows into `Predictor.predict_features`."""

    def __init__(self, predictor: "Predictor", batch_size: int) -> None:
        self.predictor = predictor
        self.batch_size = batch_size
        self.pending: list[tuple[int, float, np.ndarray, np.ndarray]] = []  # (track, time, box, crop RGB)
        self.seconds = 0.0

    def embed_pending(self, buffer: WindowBuffer) -> list[Window]:
        """Embed the pending crops (all tracks at once), feed them to the window buffer, return full windows."""
        if not self.pending:
            return []
        t0 = time.perf_counter()
        feats = self.predictor.embed_frames([p[3] for p in self.pending])  # (N, D)
        self.seconds += time.perf_counter() - t0
        windows = [w for (tid, t, box, _), f in zip(self.pending, feats) if (w := buffer.add(tid, t, box, f))]
        self.pending.clear()
        return windows

    def predict(self, windows: list[Window]) -> list:
        t0 = time.perf_counter()
        preds = self.predictor.predict_features([w.features for w in windows]) if windows else []
        self.seconds += time.perf_counter() - t0
        return preds


def _rows(windows: list[Window], preds: list, labels: list[str]) -> list[dict]:
    rows = []
    for w, p in zip(windows, preds):
        c = w.centre
        probs = np.asarray(p.probs, dtype=float)
        row = {"track": w.track_id, "time": float(w.times[c]), "t_start": float(w.times[0]),
               "t_end": float(w.times[-1]), "num_frames": len(w.times), "label": labels[int(probs.argmax())]}
        row.update({f"{PROB_PREFIX}{n}": float(v) for n, v in zip(labels, probs)})
        row.update(valence=float(p.valence), arousal=float(p.arousal))
        row.update(zip(("x", "y", "w", "h"), (float(v) for v in w.boxes[c])))
        rows.append(row)
    return rows


def analyze_video(path: str | Path, predictor: "Predictor", *, out_dir: str | Path, fps: float = 5.0,
                  window: int | None = None, stride: int | None = None, segment_s: float = 60.0,
                  teacher: str | int | None = "auto", save_crops: bool = False, progress: bool = True,
                  faces: FacePath | FaceSettings | None = None, tracker: Tracker | None = None,
                  analytics: AnalyticsConfig | None = None, embed_batch: int = 64) -> AnalysisResult:
    """Analyse one classroom video (or still image) and write timeline.parquet, summary.json and report.html.

    Args:
        path: the video (any format OpenCV reads) or an image (a 1-frame video).
        predictor: a loaded model (`Predictor.from_checkpoint`).
        out_dir: folder for the outputs (created).
        fps: analysis frame rate; frames in between are skipped without decoding to BGR.
        window: frames per window; defaults to the model's num_frames.
        stride: frames between window starts; defaults to half a window.
        segment_s: segment length for the per-segment metrics, in seconds.
        teacher: "auto", "none", a track id, or "region:x0,y0,x1,y1" (see `assign_roles`).
        save_crops: store the face crops (lossless PNG, exactly what the model saw before its resize) under
            out_dir/crops/track_<id>/ — off by default, for privacy.
        progress: show a tqdm progress bar.
        faces: how faces are found and cropped; default: the model's own settings (`Predictor.face_settings`), so
            crops look as they did in training. Settings whose crops differ from the model's are logged as a warning.
        tracker: a configured `Tracker` (defaults to `Tracker()`).
        analytics: thresholds and weights of the classroom measures.
        embed_batch: face crops per `embed_frames` call (crops of many tracks and frames go together).

    Raises:
        VideoError: if the file is missing or is not a decodable video or image.
        ValueError: for invalid settings (segment length, window, teacher spec).
    """
    import cv2
    from tqdm.auto import tqdm

    from classemo.analytics import segment_bounds
    from classemo.report import write_report

    segment_bounds(1.0, segment_s)  # validate before spending minutes on the video
    info = probe_video(path)
    window = int(window or predictor.num_frames)
    if window > predictor.num_frames:
        raise ValueError(f"window={window} frames is longer than the model takes (num_frames={predictor.num_frames})")
    stride = int(stride or max(1, window // 2))
    buffer = WindowBuffer(window, stride)
    parse_teacher(teacher)
    if isinstance(faces, FaceSettings):
        warn_if_different(faces, predictor.face_settings, f"analyze {Path(path).name}")
        faces = FacePath(faces)
    elif faces is not None:
        warn_if_different(faces.settings, predictor.face_settings, f"analyze {Path(path).name}")
    face_path = faces or predictor.face_path()
    too_small_before = face_path.too_small  # the model's path is shared between videos
    tracker = tracker or Tracker()
    model = _Model(predictor, embed_batch)
    labels = list(predictor.labels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    crops_dir = out / "crops"

    stream = FrameStream(path, fps=fps, info=info)
    timings = defaultdict(float)
    rows: list[dict] = []
    centres: dict[int, list] = defaultdict(list)
    frames_with_faces = 0
    num_faces = 0
    bar = tqdm(total=stream.expected_samples, disable=not progress, unit="frame", desc=Path(path).name)
    it = iter(stream)
    while True:
        t0 = time.perf_counter()
        item = next(it, None)
        t1 = time.perf_counter()
        timings["decode"] += t1 - t0
        if item is None:
            break
        index, t, frame = item
        found = face_path.detect(frame)
        t2 = time.perf_counter()
        timings["detect"] += t2 - t1
        boxes = np.array([[b.x, b.y, b.w, b.h] for b in found], dtype=float).reshape(-1, 4)
        ids = tracker.update(t, boxes, frame)
        t3 = time.perf_counter()
        timings["track"] += t3 - t2
        if len(found):
            frames_with_faces += 1
            num_faces += len(found)
            for tid, b, box in zip(ids, found, boxes):
                crop, _ = face_path.crop(frame, b)  # BGR, as in the converters
                model.pending.append((tid, t, box, cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)))
                centres[tid].append(box[:2] + box[2:] / 2)
                if save_crops:
                    d = crops_dir / f"track_{tid}"
                    d.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(d / f"{index:07d}.png"), crop)
        timings["crop"] += time.perf_counter() - t3
        ended = [tid for tid in buffer.open_tracks
                 if t - tracker.tracks[tid].last_t > tracker.max_lost_s]
        if len(model.pending) >= embed_batch or ended:
            windows = model.embed_pending(buffer)
            windows += [w for tid in ended if (w := buffer.flush(tid))]
            rows += _rows(windows, model.predict(windows), labels)
        bar.update(1)
    windows = model.embed_pending(buffer)
    windows += buffer.flush_all()
    rows += _rows(windows, model.predict(windows), labels)
    bar.close()
    timings["model"] = model.seconds

    stats = tracker.finish()
    roles = assign_roles(stats.kept, {tid: np.array(centres[tid]) for tid in stats.kept},
                         (info.width, info.height), teacher)
    columns = ["track", "role", "time", "t_start", "t_end", "num_frames", "label",
               *[f"{PROB_PREFIX}{n}" for n in labels], "valence", "arousal", "x", "y", "w", "h"]
    timeline = pd.DataFrame(rows, columns=[c for c in columns if c != "role"])
    timeline = timeline[timeline["track"].isin(list(stats.kept))].copy()
    timeline.insert(1, "role", timeline["track"].map(roles).astype(str))
    timeline = timeline.sort_values(["time", "track"], kind="stable").reset_index(drop=True)
    timeline = timeline.astype({"track": "int64", "num_frames": "int64"})

    # A still image has no duration; its one segment is zero-length and holds the single frame's rows.
    duration = 0.0 if info.is_image else max(stream.decoded / info.fps, float(timeline["time"].max() or 0.0)
                                                  if len(timeline) else 0.0)
    summary = summarize(timeline, predictor.label_set, duration_s=duration, segment_s=segment_s, cfg=analytics)
    track_info = {tid: {"role": roles[tid], "first_s": tr.first_t, "last_s": tr.last_t, "frames": tr.hits,
                        "mean_face_area_px": tr.mean_area} for tid, tr in stats.kept.items()}
    dropped = {tid: {"first_s": tr.first_t, "last_s": tr.last_t, "frames": tr.hits}
               for tid, tr in stats.dropped.items()}
    if dropped:
        log.info("dropped %d track(s) shorter than %.2f s: %s", len(dropped), tracker.min_duration(), sorted(dropped))
    summary.update(
        video={"path": str(path), "fps": info.fps, "width": info.width, "height": info.height,
               "is_image": info.is_image, "decoded_frames": stream.decoded, "analysed_frames": stream.yielded,
               "truncated": stream.truncated},
        analysis={"fps": fps, "window": window, "stride": stride, "teacher": str(teacher),
                  "detector": type(face_path.detector).__name__, "face": face_path.settings.to_dict(),
                  "faces_too_small": face_path.too_small - too_small_before, "frames_with_faces": frames_with_faces,
                  "face_detections": num_faces, "min_track_s": tracker.min_duration(),
                  "reidentifications": stats.reidentified},
        tracks={str(k): v for k, v in track_info.items()},
        dropped_tracks={str(k): v for k, v in dropped.items()},
        no_faces=len(timeline) == 0,
        model=dict(getattr(predictor, "info", {}) or {}),
        timings_s=dict(timings),
        privacy=PRIVACY_NOTE + (" Face crops WERE saved (--save-crops)." if save_crops else ""),
    )
    timeline_path = out / "timeline.parquet"
    summary_path = out / "summary.json"
    timeline.to_parquet(timeline_path, index=False)
    summary_path.write_text(json.dumps(summary, indent=2, default=_json_default))
    report_path = write_report(out / "report.html", timeline, summary, predictor.label_set)
    return AnalysisResult(out, timeline, summary, timeline_path, summary_path, report_path, track_info, dropped)


def _json_default(o: object) -> object:
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
