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
from classemo.live.resume import LiveCheckpoint, merge_observations, shift_observation, shift_rows
from classemo.live.source import LiveSource
from classemo.live.state import FaceThumbnails, LiveConfig, LiveState
from classemo.video.pipeline import AnalysisResult, assign_roles, parse_teacher, resolve_window, write_analysis
from classemo.video.stages import FaceObserver, WindowAssembler, embed_chunks
from classemo.video.track import Tracker

if TYPE_CHECKING:
    from classemo.predictor import Predictor


def live_roles(tracker: Tracker, observer: FaceObserver, frame_size: tuple[int, int],
               teacher: str | int | None, *, roles_after_s: float = 0.0) -> dict[int, str]:
    """`assign_roles` over the tracks seen so far that are long enough to keep (the teacher may change as the
    lesson goes on and the evidence grows). The "auto" rule waits for `roles_after_s` of stream: a student who gets
    up and walks to a desk in the first seconds stands apart just as a teacher does, until the lesson shows more."""
    if teacher == "auto" and observer.last_time < roles_after_s:
        return {}
    keep = tracker.min_duration()
    tracks = {tid: tr for tid, tr in tracker.tracks.items() if tr.duration_s >= keep}
    # Only the region rule reads the face centres, which grow with the lesson; "auto" reads each track's running
    # statistics, so a state costs the same at minute 50 as at minute 1.
    region = parse_teacher(teacher)[0] == "region"
    centres = {tid: np.asarray(observer.centres[tid]).reshape(-1, 2) if region else np.empty((0, 2))
               for tid in tracks}
    return assign_roles(tracks, centres, frame_size, teacher) if tracks else {}


def run_live(source: LiveSource, predictor: "Predictor", *, out_dir: str | Path,
             on_state: Callable[[dict], None] | None = None, live: LiveConfig | None = None,
             analytics: AnalyticsConfig | None = None, teacher: str | int | None = "auto",
             window: int | None = None, stride: int | None = None, segment_s: float = 60.0,
             state_every_s: float = 1.0, save_crops: bool = False, resume: LiveCheckpoint | None = None,
             on_checkpoint: Callable[[LiveCheckpoint], None] | None = None,
             checkpoint_every_s: float = 5.0, show_faces: bool = False) -> AnalysisResult:
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
        resume: what an earlier run of this lesson analysed (`classemo.live.resume`): this run goes on from it, and
            the report covers both.
        on_checkpoint: receives a `LiveCheckpoint` about every `checkpoint_every_s` wall seconds, and at the end.
        show_faces: give each person of a snapshot `face`, their newest crop as a small JPEG data URL (off: no face
            image leaves the analysis; `save_crops` alone decides what goes to disk).

    Raises:
        ValueError: for invalid settings (window, teacher spec, segment length), before any frame is read.
    """
    from classemo.analytics import segment_bounds

    segment_bounds(1.0, segment_s)
    window, stride = resolve_window(predictor, window, stride)
    parse_teacher(teacher)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    past = resume or LiveCheckpoint()
    offset = past.offset_s
    tracker = Tracker(first_id=past.next_track)
    # One crop is enough to go to the model (a live frame's faces are embedded as they come), and a chunk comes at
    # least every `state_every_s` of stream time, empty when nobody is in view, so the page hears "no faces".
    observer = FaceObserver(str(source.source), predictor.face_path(), tracker, fps=source.fps, embed_batch=1,
                            stream=source, max_wait_s=state_every_s,
                            crops_dir=out / "crops" if save_crops else None)
    assembler = WindowAssembler(predictor, window, stride)
    state = LiveState(predictor.label_set, live or LiveConfig(), analytics or AnalyticsConfig())
    state.add_rows(past.rows)
    state.alert_log = list(past.alert_log)
    frame_size = (source.info.width, source.info.height)
    rows = list(past.rows)  # every part's rows, in lesson time
    faces = FaceThumbnails() if show_faces else None
    model_s, next_state, next_checkpoint, states = 0.0, 0.0, time.monotonic() + checkpoint_every_s, 0

    def checkpoint() -> LiveCheckpoint:
        health = source.health()
        part = shift_observation(observer.observation or observer.observed(), offset)
        gaps = [*past.gaps, *({"start_s": g.start_s + offset, "end_s": None if g.end_s is None else g.end_s + offset,
                               "reason": "stream dropped"} for g in health.gaps)]
        frames = {k: past.frames[k] + v for k, v in (("captured", health.captured), ("analysed", health.analysed),
                                                     ("dropped", health.dropped))}
        return LiveCheckpoint(rows, [*past.parts, part], offset + observer.last_time + 1.0 / source.fps,
                              tracker.next_id, state.alert_log, gaps, frames, past.restarts, time.time())

    for chunk in observer:
        for t in set(chunk.times):
            state.note_faces(t + offset, chunk.times.count(t))
        if faces is not None:
            faces.add(chunk.crops, chunk.tracks)
        model_s += embed_chunks(predictor, [chunk])  # drops the crops
        before = len(assembler.rows)
        assembler.add(chunk)
        new_rows = shift_rows(assembler.rows[before:], offset)
        rows += new_rows
        state.add_rows(new_rows)
        now = time.monotonic()
        if on_state is not None and (now >= next_state or chunk.final):
            next_state = now + state_every_s
            state.set_roles(live_roles(tracker, observer, frame_size, teacher, roles_after_s=state.config.roles_after_s))
            snapshot = state.snapshot(observer.last_time + offset)
            if faces is not None:
                faces.attach(snapshot["people"])
                recent = observer.last_time - state.config.gone_after_s
                faces.forget({p["track"] for p in snapshot["people"]}
                             | {i for i, tr in tracker.tracks.items() if tr.last_t >= recent})
            captured = source.last_capture_wall
            snapshot["health"] = {**asdict(source.health()), "error": source.error, "restarts": past.restarts,
                                  "state_age_s": None if captured is None else time.monotonic() - captured}
            snapshot["ended"] = chunk.final
            on_state(snapshot)
            states += 1
        if on_checkpoint is not None and (now >= next_checkpoint or chunk.final):
            next_checkpoint = now + checkpoint_every_s
            on_checkpoint(checkpoint())
    done = checkpoint()
    extra = {"live": {"source": str(source.source), "captured_frames": done.frames["captured"],
                      "analysed_frames": done.frames["analysed"], "dropped_frames": done.frames["dropped"],
                      "gaps": done.gaps, "restarts": done.restarts, "error": source.error, "states": states,
                      "alerts": state.alert_log}}
    return write_analysis(out, source.source, merge_observations(done.parts), rows, predictor, fps=source.fps,
                          window=window, stride=stride, segment_s=segment_s, teacher=teacher, save_crops=save_crops,
                          analytics=analytics, model_s=model_s + assembler.seconds, extra=extra)
