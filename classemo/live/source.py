"""A live frame source: a camera, a network stream (MJPEG over HTTP, RTSP, anything FFmpeg reads) or a file played at
its own speed, captured on a thread that never waits for the analysis.

The capture thread keeps only the newest `queue_size` sampled frames: when the model falls behind, the oldest are
dropped and counted, so the state stays fresh and the lag cannot grow. A stream that fails mid-lesson is reopened
with exponential backoff, and the gap is recorded. Iterating a `LiveSource` yields `(index, time_s, frame_bgr)` as
`classemo.video.decode.FrameStream` does, so `classemo.video.stages.FaceObserver` reads it unchanged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from classemo.video.decode import VideoInfo

log = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


class SourceError(ValueError):
    """A live source that cannot be opened: no camera at that index, a URL that does not answer or is not a video,
    a file that does not exist."""


def parse_source(spec: str | int) -> int | str:
    """A camera index ("0" -> 0), a stream URL, or a video file path (which must exist).

    Raises:
        SourceError: a path that is neither a URL nor an existing file.
    """
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return int(spec)
    if spec.startswith(STREAM_SCHEMES):
        return spec
    if not Path(spec).is_file():
        raise SourceError(f"{spec}: not a camera index, a stream URL ({', '.join(STREAM_SCHEMES)}) or a video file")
    return spec


@dataclass
class Gap:
    """A stretch of stream time with no frames: the stream dropped and was being reopened."""

    start_s: float
    end_s: float | None = None  # None while it lasts


@dataclass
class SourceHealth:
    """What the page shows of the stream: rates over the last few seconds, drops and gaps."""

    fps_in: float
    fps_analysed: float
    dropped: int
    captured: int
    analysed: int
    gaps: list[Gap] = field(default_factory=list)
    connected: bool = True


class LiveSource:
    """Sampled frames of a live source, captured on a background thread.

    Args:
        source: camera index, stream URL or video file (`parse_source`).
        fps: analysis frame rate: the capture thread keeps one frame per 1/fps seconds of stream time.
        realtime: play a file at its own speed, dropping frames the analysis cannot take (a camera stand-in for
            demos and tests). Without it a file is read as fast as the analysis takes it, nothing dropped.
            Cameras and streams are always real time.
        queue_size: sampled frames kept for the analysis; older ones are dropped when it falls behind.
        retries: reopen attempts after a stream fails (with backoff doubling from `backoff_s`, at most 8 s); then
            the source ends.
        backoff_s: the first reopen delay.
        max_seconds: stop after this much stream time (None: until the stream ends or `stop()`).
        opener: `cv2.VideoCapture`-like factory (tests).
    """

    def __init__(self, source: int | str, *, fps: float = 5.0, realtime: bool = True, queue_size: int = 2,
                 retries: int = 5, backoff_s: float = 0.5, max_seconds: float | None = None,
                 opener: Callable[[int | str], object] | None = None) -> None:
        if fps <= 0 or queue_size < 1:
            raise ValueError(f"fps must be > 0 and queue_size >= 1, got {fps}, {queue_size}")
        self.source, self.fps, self.queue_size = parse_source(source), fps, queue_size
        self.is_file = isinstance(self.source, str) and not self.source.startswith(STREAM_SCHEMES)
        self.drops_frames = realtime or not self.is_file
        self.retries, self.backoff_s, self.max_seconds = retries, backoff_s, max_seconds
        self._opener = opener or _open_capture
        self._queue: deque[tuple[int, float, np.ndarray, float]] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._done = False
        self._thread: threading.Thread | None = None
        self.decoded = self.yielded = self.dropped = 0
        self.truncated = False
        self.gaps: list[Gap] = []
        self.error: str | None = None  # why the source ended early (retries exhausted), for the report
        self.last_capture_wall: float | None = None  # wall time the newest yielded frame was captured
        self._in_times: deque[float] = deque(maxlen=256)
        self._out_times: deque[float] = deque(maxlen=256)
        self._cap = self._open()  # fail here, in the caller, with a one-line error
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise SourceError(f"{self.source}: opened, but no frame could be read (not a video stream?)")
        self._first = first
        src_fps = float(self._cap.get(5) or 0.0)  # cv2.CAP_PROP_FPS
        self.source_fps = src_fps if 0 < src_fps <= 1000 else 30.0
        self.info = VideoInfo(str(self.source), self.source_fps, 0, first.shape[1], first.shape[0], False)

    expected_samples = None  # unknown length: progress bars count up

    def _open(self) -> object:
        cap = self._opener(self.source)
        if not cap.isOpened():
            what = f"camera {self.source}" if isinstance(self.source, int) else str(self.source)
            raise SourceError(f"cannot open {what}: no such camera, or the address does not answer with a video "
                              "stream")
        return cap

    # ---- the capture thread -------------------------------------------------------------------------------------

    def start(self) -> "LiveSource":
        """Start capturing (iteration starts it too)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._capture, name=f"capture {self.source}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """End the source: the iteration finishes after the frames already queued."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def _capture(self) -> None:
        start_wall = time.monotonic()
        period, next_t, index, frame = 1.0 / self.fps, 0.0, 0, self._first
        try:
            while not self._stop.is_set():
                if frame is None:
                    ok, frame = self._cap.read()
                    if not ok or frame is None:
                        frame = None
                        if self.is_file or not self._reconnect(start_wall):
                            break
                        continue
                now_wall = time.monotonic()
                t = index / self.source_fps if self.is_file else now_wall - start_wall
                if self.max_seconds is not None and t > self.max_seconds:
                    break
                if self.is_file and self.drops_frames:  # a file played at its own speed
                    time.sleep(max(0.0, start_wall + t - now_wall))
                self.decoded += 1
                self._in_times.append(time.monotonic())
                if t + 0.5 / self.source_fps >= next_t:
                    # Streams sample from now on; a file from its own clock, so its sampling matches FrameStream's.
                    next_t = next_t + period if self.is_file else t + period
                    self._put((index, t, frame, time.monotonic()))
                index, frame = index + 1, None
        finally:
            self._cap.release()
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _put(self, item: tuple[int, float, np.ndarray, float]) -> None:
        with self._cond:
            if not self.drops_frames:
                while len(self._queue) >= self.queue_size and not self._stop.is_set():
                    self._cond.wait(0.1)
            elif len(self._queue) >= self.queue_size:
                self._queue.popleft()  # the analysis is behind: the oldest frame goes, the newest is kept
                self.dropped += 1
            self._queue.append(item)
            self._cond.notify_all()

    def _reconnect(self, start_wall: float) -> bool:
        """Reopen a failed stream with backoff; records the gap in stream time. False when the retries are spent or
        on stop()."""
        lost_at = time.monotonic() - start_wall
        gap = Gap(lost_at)
        self.gaps.append(gap)
        self._cap.release()
        delay = self.backoff_s
        for attempt in range(1, self.retries + 1):
            if self._stop.wait(delay):
                return False
            try:
                self._cap = self._open()
            except SourceError as e:
                log.warning("%s: reconnect %d/%d failed: %s", self.source, attempt, self.retries, e)
                delay = min(delay * 2, 8.0)
                continue
            gap.end_s = time.monotonic() - start_wall
            log.info("%s: reconnected after %d attempt(s)", self.source, attempt)
            return True
        self.error = f"the stream stopped at {lost_at:.1f} s and did not come back after {self.retries} retries"
        return False

    # ---- the analysis side --------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        self.start()
        while True:
            with self._cond:
                while not self._queue and not self._done and not self._stop.is_set():
                    self._cond.wait(0.5)
                if not self._queue:
                    return
                index, t, frame, captured = self._queue.popleft()
                self._cond.notify_all()
            self.yielded += 1
            self.last_capture_wall = captured
            self._out_times.append(time.monotonic())
            yield index, t, frame

    def health(self) -> SourceHealth:
        """Rates over the last 5 s of wall time, counts, gaps."""
        now = time.monotonic()

        def rate(times: deque[float]) -> float:
            recent = [x for x in list(times) if x >= now - 5.0]
            return len(recent) / 5.0

        connected = not self.gaps or self.gaps[-1].end_s is not None
        return SourceHealth(rate(self._in_times), rate(self._out_times), self.dropped, self.decoded, self.yielded,
                            list(self.gaps), connected)


def _open_capture(source: int | str) -> object:
    import cv2

    return cv2.VideoCapture(source) if isinstance(source, int) else cv2.VideoCapture(source, cv2.CAP_FFMPEG)
