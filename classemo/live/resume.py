"""Resuming a live lesson after the process that analysed it died: what it had analysed, in one picklable record.

A stream analysed by a Serve stream actor (serve/streams.py) may lose its process mid-lesson; Ray restarts the
actor, which reads the last `LiveCheckpoint` and goes on. Each run of the stream is a *part*: its stream times start
at 0, so a part's rows and tracks are shifted by the stream time the part started at (`offset_s`), and its track ids
start after the last part's (`next_track`). The time between the last checkpoint and the restart is lost and shown
as a gap; everything checkpointed is kept, and the lesson's report covers every part.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from classemo.video.stages import Observation
from classemo.video.track import TrackerStats

TIME_KEYS = ("time", "t_start", "t_end")


@dataclass
class LiveCheckpoint:
    """What a live stream has analysed so far, in stream time since the lesson started."""

    rows: list[dict] = field(default_factory=list)  # timeline rows of every part, times shifted
    parts: list[Observation] = field(default_factory=list)  # each part's observation, times shifted
    offset_s: float = 0.0  # where the next part's stream time 0 falls
    next_track: int = 0  # the next part's first track id
    alert_log: list[dict] = field(default_factory=list)
    gaps: list[dict] = field(default_factory=list)  # {"start_s", "end_s", "reason"}: drops and restarts
    frames: dict[str, int] = field(default_factory=lambda: {"captured": 0, "analysed": 0, "dropped": 0})
    restarts: int = 0
    written_at: float = 0.0  # wall clock (time.time()) when it was taken

    def resumed(self, at: float) -> "LiveCheckpoint":
        """The checkpoint a part restarted at wall time `at` starts from: the stream time since the checkpoint was
        taken is lost (a live stream does not wait), and shown as a gap."""
        lost = max(0.0, at - self.written_at) if self.written_at else 0.0
        gap = {"start_s": self.offset_s, "end_s": self.offset_s + lost, "reason": "analysis restarted"}
        return dataclasses.replace(self, offset_s=self.offset_s + lost, gaps=[*self.gaps, gap],
                                   restarts=self.restarts + 1)


def shift_rows(rows: list[dict], offset_s: float) -> list[dict]:
    """Rows with their times moved by `offset_s` (new dicts; the input is left alone)."""
    if not offset_s:
        return rows
    return [{**r, **{k: r[k] + offset_s for k in TIME_KEYS if k in r}} for r in rows]


def shift_observation(obs: Observation, offset_s: float) -> Observation:
    """A part's observation with its tracks' times moved by `offset_s`."""
    def moved(tracks: dict) -> dict:
        return {tid: dataclasses.replace(tr, first_t=tr.first_t + offset_s, last_t=tr.last_t + offset_s)
                for tid, tr in tracks.items()}
    stats = TrackerStats(moved(obs.stats.kept), moved(obs.stats.dropped), obs.stats.reidentified)
    return dataclasses.replace(obs, stats=stats)


def merge_observations(parts: list[Observation]) -> Observation:
    """One observation for a lesson analysed in parts (already shifted, with distinct track ids): tracks and face
    centres together, counts and timings summed; the stream's info is the last part's."""
    if not parts:
        raise ValueError("no part to merge")
    if len(parts) == 1:
        return parts[0]
    last = parts[-1]
    kept = {k: v for p in parts for k, v in p.stats.kept.items()}
    dropped = {k: v for p in parts for k, v in p.stats.dropped.items()}
    timings: dict[str, float] = {}
    for p in parts:
        for k, v in p.timings.items():
            timings[k] = timings.get(k, 0.0) + v
    return dataclasses.replace(
        last, decoded=sum(p.decoded for p in parts), analysed=sum(p.analysed for p in parts),
        truncated=any(p.truncated for p in parts),
        stats=TrackerStats(kept, dropped, sum(p.stats.reidentified for p in parts)),
        min_track_s=min(p.min_track_s for p in parts),
        centres={k: np.asarray(v) for p in parts for k, v in p.centres.items()},
        frames_with_faces=sum(p.frames_with_faces for p in parts),
        face_detections=sum(p.face_detections for p in parts),
        faces_too_small=sum(p.faces_too_small for p in parts), timings=timings)
