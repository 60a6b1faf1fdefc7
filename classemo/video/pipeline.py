"""Classroom video analysis: frames -> faces -> tracks -> per-window emotions -> Table 3/4 metrics -> report.

`analyze_video` runs the stages of `classemo.video.stages` in one process (decode, detect, track and crop; the
model on chunks of crops; windows through the temporal part), then `write_analysis`. The hot loop holds one frame,
the open tracks' window buffers and one chunk of face crops waiting for the model, so memory does not grow with the
video's length (only the timeline rows do, a few hundred bytes a window).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from classemo.analytics import PROB_PREFIX, AnalyticsConfig, readings, summarize
from classemo.faces import FacePath, FaceSettings, warn_if_different
from classemo.faces.reading import ReadingConfig
from classemo.video.decode import probe_video
from classemo.video.stages import FaceObserver, Observation, WindowAssembler, embed_chunks
from classemo.video.track import Track, Tracker

if TYPE_CHECKING:
    from classemo.predictor import Predictor

log = logging.getLogger(__name__)

# What the face path adds to each window (classemo.faces.reading.window_reading), after the box.
READING_COLUMNS = ("yaw", "pitch", "roll", "attention", "face_px", "det_score", "sharpness", "readable", "unread_reason")
PRIVACY_NOTE = ("Track IDs are per-video numbers, not identities. No face images are stored unless --save-crops "
                "was given; the timeline holds only boxes, head pose, face quality, times, class probabilities and "
                "valence/arousal.")


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


AREA_APART = 1.5  # auto teacher: a face this many times larger than anyone else's ...
MOBILITY_APART = 2.0  # ... or a face centre this many times more mobile than anyone else's ...
MIN_TEACHER_MOBILITY = 0.5  # ... and moving at least this many face widths (RMS) about its mean


def _stands_apart(tid: int, values: dict[int, float], factor: float) -> bool:
    """Whether track `tid`'s value is at least `factor` times every other track's."""
    others = [v for t, v in values.items() if t != tid]
    return bool(others) and values[tid] >= factor * max(others)


def assign_roles(tracks: dict[int, Track], centres: dict[int, np.ndarray], frame_size: tuple[int, int],
                 teacher: str | int | None = "auto") -> dict[int, str]:
    """Label each kept track "teacher" or "student".

    Heuristic ("auto"): among tracks seen for at least a quarter of the longest track's frames, a teacher must stand
    apart from everyone else: a mean face area at least `AREA_APART` times any other's (nearer the camera), or a
    mobility at least `MOBILITY_APART` times any other's and at least `MIN_TEACHER_MOBILITY` face widths (walking
    about while the students sit); mobility is the spread of the face centre around its mean position, in face widths
    (`Track.mobility`). Among those that stand apart, the teacher maximises (mean face area / largest mean face area)
    + (mobility / largest mobility). Nobody standing apart means no teacher in view: four adults at desks, one of
    whom gets up for a while, have no teacher among them. With a single person nobody is called the teacher, because
    a close-up of one face says nothing about its role (give --teacher 0 if it is).

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
        apart = [tid for tid in eligible if _stands_apart(tid, area, AREA_APART) or
                 (mob[tid] >= MIN_TEACHER_MOBILITY and _stands_apart(tid, mob, MOBILITY_APART))]
        if apart:
            max_area, max_mob = max(area.values()), max(mob.values())
            score = {tid: area[tid] / max_area + (mob[tid] / max_mob if max_mob > 0 else 0.0) for tid in apart}
            chosen = max(score, key=score.get)
    if chosen is not None:
        roles[chosen] = "teacher"
    return roles



def resolve_window(predictor: "Predictor", window: int | None, stride: int | None) -> tuple[int, int]:
    """Frames per window (default: the model's num_frames) and between window starts (default: half a window).

    Raises:
        ValueError: for a window longer than the model takes.
    """
    window = int(window or predictor.num_frames)
    if window > predictor.num_frames:
        raise ValueError(f"window={window} frames is longer than the model takes (num_frames={predictor.num_frames})")
    return window, int(stride or max(1, window // 2))


def write_analysis(out_dir: str | Path, source: str | Path, obs: Observation, rows: list[dict], predictor: "Predictor",
                   *, fps: float, window: int, stride: int, segment_s: float = 60.0,
                   teacher: str | int | None = "auto", save_crops: bool = False,
                   analytics: AnalyticsConfig | None = None, model_s: float = 0.0,
                   extra: dict | None = None, reading: ReadingConfig | None = None) -> AnalysisResult:
    """Stage 3: roles, the timeline and the summary of a video's windows; write timeline.parquet, summary.json and
    report.html into out_dir (created).

    Args:
        out_dir: folder for the outputs.
        source: the video as the user named it (a path or a URI), for the summary and the report's title.
        obs: what `FaceObserver` found.
        rows: the `WindowAssembler`'s rows.
        predictor: the model (labels, provenance).
        fps, window, stride, segment_s, teacher, save_crops, analytics: as in `analyze_video`.
        model_s: seconds spent in the model, for the summary's timings.
        extra: more top-level summary entries (a live lesson's drops, gaps and alerts under "live").
        reading: the attention and readability thresholds the rows were made with, for the summary.
    """
    from classemo.report import write_report

    info, stats = obs.info, obs.stats
    labels = list(predictor.labels)
    roles = assign_roles(stats.kept, obs.centres, (info.width, info.height), teacher)
    columns = ["track", "role", "time", "t_start", "t_end", "num_frames", "label",
               *[f"{PROB_PREFIX}{n}" for n in labels], "valence", "arousal", "x", "y", "w", "h", *READING_COLUMNS]
    timeline = pd.DataFrame(rows, columns=[c for c in columns if c != "role"])
    timeline["reading"] = readings(timeline[[f"{PROB_PREFIX}{n}" for n in labels]].to_numpy(float),
                                   predictor.label_set, analytics or AnalyticsConfig(), timeline["attention"])
    timeline = timeline[timeline["track"].isin(list(stats.kept))].copy()
    timeline.insert(1, "role", timeline["track"].map(roles).astype(str))
    timeline = timeline.sort_values(["time", "track"], kind="stable").reset_index(drop=True)
    timeline = timeline.astype({"track": "int64", "num_frames": "int64", "readable": bool})

    # A still image has no duration; its one segment is zero-length and holds the single frame's rows.
    duration = 0.0 if info.is_image else max(obs.decoded / info.fps, float(timeline["time"].max() or 0.0)
                                                  if len(timeline) else 0.0)
    summary = summarize(timeline, predictor.label_set, duration_s=duration, segment_s=segment_s, cfg=analytics)
    track_info = {tid: {"role": roles[tid], "first_s": tr.first_t, "last_s": tr.last_t, "frames": tr.hits,
                        "mean_face_area_px": tr.mean_area} for tid, tr in stats.kept.items()}
    dropped = {tid: {"first_s": tr.first_t, "last_s": tr.last_t, "frames": tr.hits}
               for tid, tr in stats.dropped.items()}
    if dropped:
        log.info("dropped %d track(s) shorter than %.2f s: %s", len(dropped), obs.min_track_s, sorted(dropped))
    summary.update(
        video={"path": str(source), "fps": info.fps, "width": info.width, "height": info.height,
               "is_image": info.is_image, "decoded_frames": obs.decoded, "analysed_frames": obs.analysed,
               "truncated": obs.truncated},
        analysis={"fps": fps, "window": window, "stride": stride, "teacher": str(teacher),
                  "detector": obs.detector, "face": obs.face, "faces_too_small": obs.faces_too_small,
                  "frames_with_faces": obs.frames_with_faces, "face_detections": obs.face_detections,
                  "min_track_s": obs.min_track_s, "reidentifications": stats.reidentified,
                  "reading": (reading or ReadingConfig()).to_dict()},
        tracks={str(k): v for k, v in track_info.items()},
        dropped_tracks={str(k): v for k, v in dropped.items()},
        no_faces=len(timeline) == 0,
        model=dict(getattr(predictor, "info", {}) or {}),
        timings_s={**obs.timings, "model": model_s},
        privacy=PRIVACY_NOTE + (" Face crops WERE saved (--save-crops)." if save_crops else ""),
        **(extra or {}),
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timeline_path = out / "timeline.parquet"
    summary_path = out / "summary.json"
    timeline.to_parquet(timeline_path, index=False)
    summary_path.write_text(json.dumps(summary, indent=2, default=_json_default))
    report_path = write_report(out / "report.html", timeline, summary, predictor.label_set)
    return AnalysisResult(out, timeline, summary, timeline_path, summary_path, report_path, track_info, dropped)


def analyze_video(path: str | Path, predictor: "Predictor", *, out_dir: str | Path, fps: float = 5.0,
                  window: int | None = None, stride: int | None = None, segment_s: float = 60.0,
                  teacher: str | int | None = "auto", save_crops: bool = False, progress: bool = True,
                  faces: FacePath | FaceSettings | None = None, tracker: Tracker | None = None,
                  analytics: AnalyticsConfig | None = None, embed_batch: int = 64,
                  reading: ReadingConfig | None = None) -> AnalysisResult:
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
        reading: attention and readability thresholds (`classemo.faces.reading.ReadingConfig`).

    Raises:
        VideoError: if the file is missing or is not a decodable video or image.
        ValueError: for invalid settings (segment length, window, teacher spec).
    """
    from classemo.analytics import segment_bounds

    segment_bounds(1.0, segment_s)  # validate before spending minutes on the video
    info = probe_video(path)
    window, stride = resolve_window(predictor, window, stride)
    parse_teacher(teacher)
    if isinstance(faces, FaceSettings):
        warn_if_different(faces, predictor.face_settings, f"analyze {Path(path).name}")
        faces = FacePath(faces)
    elif faces is not None:
        warn_if_different(faces.settings, predictor.face_settings, f"analyze {Path(path).name}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    observer = FaceObserver(path, faces or predictor.face_path(), tracker or Tracker(), fps=fps,
                            embed_batch=embed_batch, info=info, crops_dir=out / "crops" if save_crops else None,
                            progress=progress)
    assembler = WindowAssembler(predictor, window, stride, reading)
    model_s = 0.0
    for chunk in observer:
        model_s += embed_chunks(predictor, [chunk])
        assembler.add(chunk)
    return write_analysis(out, path, observer.observation, assembler.rows, predictor, fps=fps, window=window,
                          stride=stride, segment_s=segment_s, teacher=teacher, save_crops=save_crops,
                          analytics=analytics, model_s=model_s + assembler.seconds, reading=reading)


def _json_default(o: object) -> object:
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
