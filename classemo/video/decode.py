"""Streaming frame decoding with OpenCV, sampled at an analysis frame rate; a still image is a 1-frame video."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


class VideoError(ValueError):
    """A file that cannot be analysed as a video: missing, not a video, truncated or undecodable."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video (frame_count may be an estimate for some containers)."""

    path: str
    fps: float
    frame_count: int
    width: int
    height: int
    is_image: bool

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps if self.fps > 0 and not self.is_image else 0.0


def _read_image(path: Path) -> np.ndarray | None:
    """A still image as BGR, through the one decode training and Serve use (EXIF orientation applied); None when
    the file is empty or not an image."""
    from classemo.preprocessing import ImageDecodeError, decode_image_bgr

    # Bytes rather than cv2.imread, so non-ASCII paths work and the decode is the shared one.
    try:
        return decode_image_bgr(path.read_bytes())
    except ImageDecodeError:
        return None


def _check_path(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise VideoError(f"{p}: no such file")
    if not p.is_file():
        raise VideoError(f"{p}: not a file")
    if p.stat().st_size == 0:
        raise VideoError(f"{p}: the file is empty")
    return p


def read_frame(path: str | Path, time_s: float | None = None) -> np.ndarray:
    """One BGR frame: a still image itself, or a video's frame at round(time_s x fps).

    Raises:
        VideoError: the file is missing, not an image or video, or has no frame at that time.
    """
    import cv2

    p = _check_path(path)
    if time_s is None:
        image = _read_image(p)
        if image is None:
            raise VideoError(f"{p}: cannot be read as an image")
        return image
    cap = cv2.VideoCapture(str(p))
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(round(time_s * (cap.get(cv2.CAP_PROP_FPS) or 0.0))))
        ok, frame = cap.read()
    finally:
        cap.release()
    if not ok:
        raise VideoError(f"{p}: no frame at {time_s} s")
    return frame


def probe_video(path: str | Path) -> VideoInfo:
    """Open a video (or still image) and read its metadata, without decoding the whole stream.

    Raises:
        VideoError: if the file is missing, empty, or neither a decodable video nor an image.
    """
    import cv2

    p = _check_path(path)
    if p.suffix.lower() in IMAGE_SUFFIXES:
        img = _read_image(p)
        if img is None:
            raise VideoError(f"{p}: not a decodable image")
        return VideoInfo(str(p), 0.0, 1, img.shape[1], img.shape[0], True)
    cap = cv2.VideoCapture(str(p))
    try:
        if not cap.isOpened():
            raise VideoError(f"{p}: cannot be opened as a video (not a video file, or truncated before its header)")
        ok, frame = cap.read()
        if not ok or frame is None:
            raise VideoError(f"{p}: opened but no frame could be decoded (truncated or corrupt video)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if fps <= 0 or fps > 1000:
            raise VideoError(f"{p}: the container reports no usable frame rate ({fps})")
        return VideoInfo(str(p), fps, max(count, 1), frame.shape[1], frame.shape[0], False)
    finally:
        cap.release()


def iter_frames(path: str | Path, *, fps: float = 5.0, info: VideoInfo | None = None
                ) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield `(source_index, time_s, frame_bgr)` at about `fps` analysis frames per second.

    Frames are streamed: only the current frame is held, so memory does not grow with the video's length.
    Skipped frames are `grab()`bed, not decoded to BGR, which is most of the saving at a low analysis rate.

    Args:
        path: video file, or a still image (yielded once at time 0).
        fps: analysis frame rate; the source rate is used when it is lower.
        info: result of `probe_video`, if the caller already has it.

    Raises:
        VideoError: if the file cannot be decoded at all. A video that stops decoding early (truncated) yields
            what it has and logs a warning; `FrameStream.truncated` reports it.
    """
    yield from FrameStream(path, fps=fps, info=info)


class FrameStream:
    """Iterable over sampled frames that also records how many frames it decoded and whether the video ended early."""

    def __init__(self, path: str | Path, *, fps: float = 5.0, info: VideoInfo | None = None) -> None:
        if fps <= 0:
            raise ValueError(f"analysis fps must be > 0, got {fps}")
        self.info = info or probe_video(path)
        self.fps = fps
        self.decoded = 0
        self.yielded = 0
        self.truncated = False

    @property
    def expected_samples(self) -> int:
        """How many frames the stream should yield (for progress bars)."""
        if self.info.is_image:
            return 1
        step = max(self.info.fps / self.fps, 1.0)
        return int(np.ceil(self.info.frame_count / step))

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        import cv2

        info = self.info
        if info.is_image:
            img = _read_image(Path(info.path))
            if img is None:
                raise VideoError(f"{info.path}: not a decodable image")
            self.decoded = self.yielded = 1
            yield 0, 0.0, img
            return
        cap = cv2.VideoCapture(info.path)
        if not cap.isOpened():
            raise VideoError(f"{info.path}: cannot be opened as a video")
        period = 1.0 / min(self.fps, info.fps)
        next_t = 0.0
        index = 0
        try:
            while True:
                if not cap.grab():
                    break
                # Times come from the frame index, not CAP_PROP_POS_MSEC, which some backends leave at 0.
                t = index / info.fps
                # Half a source frame of slack so 30 fps -> 5 fps keeps exactly every 6th frame despite rounding.
                if t + 0.5 / info.fps >= next_t:
                    ok, frame = cap.retrieve()
                    if not ok or frame is None:
                        break
                    self.yielded += 1
                    next_t += period
                    yield index, t, frame
                index += 1
        finally:
            cap.release()
            self.decoded = index
        if self.yielded == 0:
            raise VideoError(f"{info.path}: no frame could be decoded (truncated or corrupt video)")
        # Container frame counts are estimates; only a large shortfall means the file was cut off.
        if index < 0.9 * info.frame_count - 2:
            self.truncated = True
            log.warning("%s: decoding stopped at frame %d of %d; the video looks truncated", info.path, index,
                        info.frame_count)
