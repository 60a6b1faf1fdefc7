"""One classroom stream analysed as it comes, through the library stages of `classemo analyze`.

`run_live` reads a `LiveSource` with `FaceObserver` (the one face path, the tracker and its re-identification),
embeds each frame's faces (`embed_chunks`), cuts per-person windows through the temporal part (`WindowAssembler`),
and every `state_every_s` hands the teacher's page a `LiveState` snapshot with the stream's health. When the stream
ends (its end, `--seconds`, or `LiveSource.stop()` on Ctrl-C) it writes the same timeline.parquet, summary.json and
report.html that `analyze` writes for a recording (`write_analysis`), plus what only a live lesson has: drops, gaps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from classemo.analytics import AnalyticsConfig
from classemo.live.source import LiveSource
from classemo.live.state import LiveConfig, LiveState
from classemo.video.pipeline import AnalysisResult, assign_roles, parse_teacher, resolve_window, write_analysis
from classemo.video.stages import FaceObserver, WindowAssembler, embed_chunks
from classemo.video.track import Tracker

if TYPE_CHECKING:
    from classemo.predictor import Predictor


def live_roles(tracker: Tracker, observer: FaceObserver, frame_size: tuple[int, int],
               teacher: str | int | None) -> dict[int, str]:
    """`assign_roles` over the tracks seen so far that are long enough to keep (the teacher may change as the
    lesson goes on and the evidence grows)."""
    keep = tracker.min_duration()
    tracks = {tid: tr for tid, tr in tracker.tracks.items() if tr.duration_s >= keep}
    centres = {tid: np.asarray(observer.centres[tid]).reshape(-1, 2) for tid in tracks}
    return assign_roles(tracks, centres, frame_size, teacher) if tracks else {}


def run_live(source: LiveSource, predictor: "Predictor", *, out_dir: str | Path,
             on_state: Callable[[dict], None] | None = None, live: LiveConfig | None = None,
             analytics: AnalyticsConfig | None = None, teacher: str | int | None = "auto",
             window: int | None = None, stride: int | None = None, segment_s: float = 60.0,
             state_every_s: float = 1.0, save_crops: bool = False) -> AnalysisResult:
    """Analyse `source` until it ends; call `on_state(snapshot)` about every `state_every_s` seconds.

    Args:
        source: the live source (its `fps` is the analysis rate).
        predictor: the model.
        out_dir: where the lesson's timeline.parquet, summary.json and report.html go at the end.
        on_state: receives each snapshot (`LiveState.snapshot` plus `health`: fps in and analysed, drops, gaps,
            and `state_age_s`, the wall seconds from the newest analysed frame's capture to this state).
        live, analytics: window lengths, alerts, and the Table 3/4 weights and thresholds.
        teacher, window, stride, segment_s, save_crops: as in `classemo.video.pipeline.analyze_video`.
        state_every_s: seconds between snapshots.

    Raises:
        ValueError: for invalid settings (window, teacher spec, segment length), before any frame is read.
    """
    from classemo.analytics import segment_bounds

    segment_bounds(1.0, segment_s)
    window, stride = resolve_window(predictor, window, stride)
    parse_teacher(teacher)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tracker = Tracker()
    # One crop is enough to go to the model (a live frame's faces are embedded as they come), and a chunk comes at
    # least every `state_every_s` of stream time, empty when nobody is in view, so the page hears "no faces".
    observer = FaceObserver(str(source.source), predictor.face_path(), tracker, fps=source.fps, embed_batch=1,
                            stream=source, max_wait_s=state_every_s,
                            crops_dir=out / "crops" if save_crops else None)
    assembler = WindowAssembler(predictor, window, stride)
    state = LiveState(predictor.label_set, live or LiveConfig(), analytics or AnalyticsConfig())
    frame_size = (source.info.width, source.info.height)
    model_s, next_state, states = 0.0, 0.0, 0
    for chunk in observer:
        for t in set(chunk.times):
            state.note_faces(t, chunk.times.count(t))
        model_s += embed_chunks(predictor, [chunk])
        before = len(assembler.rows)
        assembler.add(chunk)
        state.add_rows(assembler.rows[before:])
        if on_state is not None and (time.monotonic() >= next_state or chunk.final):
            next_state = time.monotonic() + state_every_s
            state.set_roles(live_roles(tracker, observer, frame_size, teacher))
            snapshot = state.snapshot(observer.last_time)
            captured = source.last_capture_wall
            snapshot["health"] = {**asdict(source.health()), "error": source.error,
                                  "state_age_s": None if captured is None else time.monotonic() - captured}
            snapshot["ended"] = chunk.final
            on_state(snapshot)
            states += 1
    health = source.health()
    extra = {"live": {"source": str(source.source), "captured_frames": health.captured,
                      "analysed_frames": health.analysed, "dropped_frames": health.dropped,
                      "gaps": [asdict(g) for g in health.gaps], "error": source.error, "states": states,
                      "alerts": state.alert_log}}
    return write_analysis(out, source.source, observer.observation, assembler.rows, predictor, fps=source.fps,
                          window=window, stride=stride, segment_s=segment_s, teacher=teacher, save_crops=save_crops,
                          analytics=analytics, model_s=model_s + assembler.seconds, extra=extra)
