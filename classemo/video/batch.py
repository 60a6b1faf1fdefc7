"""Many lessons: where the videos are, which are done, and each lesson's chunks put back in order (the non-Ray half of
jobs/analyze.py; the cross-lesson summary is `classemo.video.overview`).

Sources and destinations are local paths or `s3://bucket/prefix` URIs, through pyarrow's filesystem
(`classemo.data.dataset.open_filesystem`: the endpoint from AWS_ENDPOINT_URL, short timeouts). A lesson's outputs go
to `DST/<lesson>/` (its path under SRC without the extension), written in full before its `_SUCCESS` marker, so a
job killed mid-write leaves a folder without a marker, which the next run redoes.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs

from classemo.video.stages import FaceChunk, Observation, WindowAssembler

if TYPE_CHECKING:
    from classemo.predictor import Predictor

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".3gp"})
OUTPUTS = ("timeline.parquet", "summary.json", "report.html")  # what `write_analysis` writes, the marker last
MARKER = "_SUCCESS"


class BatchError(ValueError):
    """A source, list file or destination the job cannot use; the message says which and why."""


@dataclass(frozen=True)
class Lesson:
    """One video to analyse."""

    name: str  # its output folder under DST: the path under SRC (or the list's common folder), no extension
    source: str  # local path or s3:// URI


def open_location(uri: str) -> tuple[pafs.FileSystem, str]:
    """Filesystem and in-filesystem path of a local path or `s3://bucket/prefix`."""
    from classemo.data.dataset import DatasetError, open_filesystem

    try:
        return open_filesystem(str(uri))
    except DatasetError as e:
        raise BatchError(str(e).replace("dataset root", "location")) from None


def _uri(fs: pafs.FileSystem, path: str) -> str:
    return path if isinstance(fs, pafs.LocalFileSystem) else f"s3://{path}"


def _file_info(fs: pafs.FileSystem, path: str, uri: str) -> pafs.FileInfo:
    try:
        return fs.get_file_info(path)
    except OSError as e:
        raise BatchError(f"cannot reach {uri}: {e}") from None


def list_lessons(src: str) -> list[Lesson]:
    """The videos that SRC names: a folder or S3 prefix (searched recursively for VIDEO_SUFFIXES), one video, or a
    list file (one local path or URI a line; blank lines and # comments skipped; relative paths are relative to it).

    Raises:
        BatchError: nothing at SRC, an unreadable list file, or no video found.
    """
    fs, path = open_location(src)
    info = _file_info(fs, path, src)
    if info.type == pafs.FileType.Directory:
        try:
            found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        except OSError as e:
            raise BatchError(f"cannot list {src}: {e}") from None
        sources = sorted(_uri(fs, f.path) for f in found
                         if f.type == pafs.FileType.File and PurePosixPath(f.path).suffix.lower() in VIDEO_SUFFIXES)
        root = _uri(fs, path)
    elif info.type == pafs.FileType.File and PurePosixPath(path).suffix.lower() in VIDEO_SUFFIXES:
        sources, root = [_uri(fs, path)], None
    elif info.type == pafs.FileType.File:
        sources, root = _read_list(fs, path, src), None
    else:
        raise BatchError(f"{src}: no such folder, S3 prefix, video or list file")
    if not sources:
        raise BatchError(f"no videos found in {src} (looked for {', '.join(sorted(VIDEO_SUFFIXES))})")
    return [Lesson(n, s) for n, s in zip(lesson_names(sources, root), sources)]


def _read_list(fs: pafs.FileSystem, path: str, src: str) -> list[str]:
    try:
        with fs.open_input_stream(path) as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BatchError(f"cannot read the list file {src}: {e}") from None
    base = _uri(fs, str(PurePosixPath(path).parent))
    entries = [e for line in text.splitlines() if (e := line.strip()) and not e.startswith("#")]
    out = list(dict.fromkeys(e if "://" in e or e.startswith("/") else f"{base}/{e}" for e in entries))
    if not out:
        raise BatchError(f"the list file {src} names no video")
    return out


def lesson_names(sources: list[str], root: str | None = None) -> list[str]:
    """Output folder names: each source's path under `root` (default: the sources' common folder) without its
    extension; sources that would share a name keep their extension ("math.mp4" and "math.mov")."""
    def parts(uri: str) -> list[str]:
        return [p for p in uri.removeprefix("s3://").split("/") if p]

    split = [parts(s) for s in sources]
    if root is not None:
        common = len(parts(root))
    else:
        common = 0
        parents = [p[:-1] for p in split]
        while all(len(p) > common and p[common] == parents[0][common] for p in parents):
            common += 1
    full = ["/".join(p[common:]) for p in split]
    stems = [str(PurePosixPath(f).with_suffix("")) for f in full]
    shared = Counter(stems)
    return [f if shared[s] > 1 else s for f, s in zip(full, stems)]


def fetch(source: str, folder: Path) -> Path:
    """A local path for `source`: itself when local, else a download into `folder` under its own file name.

    Raises:
        BatchError: an S3 object that cannot be read (missing, no access, endpoint down).
    """
    if "://" not in source:
        return Path(source)
    fs, path = open_location(source)
    local = folder / PurePosixPath(path).name
    try:
        with fs.open_input_stream(path) as src, open(local, "wb") as dst:
            while block := src.read(1 << 24):
                dst.write(block)
    except OSError as e:
        raise BatchError(f"cannot read {source}: {e}") from None
    return local


def _join(root: str, *names: str) -> str:
    return "/".join([root.rstrip("/"), *names])


def write_bytes(dst: str, name: str, data: bytes) -> None:
    """Write DST/name (creating folders on a local disk; S3 has none, and pyarrow would add marker objects)."""
    fs, path = open_location(_join(dst, name))
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(str(PurePosixPath(path).parent), recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(data)


def read_bytes(dst: str, name: str) -> bytes | None:
    """DST/name, or None if it does not exist."""
    fs, path = open_location(_join(dst, name))
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise BatchError(f"cannot read {_join(dst, name)}: {e}") from None


def read_marker(dst: str, lesson: str) -> dict | None:
    """The `_SUCCESS` marker of a lesson, or None if the lesson is not complete."""
    data = read_bytes(dst, f"{lesson}/{MARKER}")
    return None if data is None else json.loads(data)


def is_complete(dst: str, lesson: str, settings: dict) -> bool:
    """Whether DST holds the lesson's outputs from an analysis with these settings (model, rates, window...)."""
    marker = read_marker(dst, lesson)
    return marker is not None and marker.get("settings") == settings


def publish(folder: Path, dst: str, lesson: Lesson, settings: dict) -> dict:
    """Copy a lesson's outputs from a local folder to DST/<lesson>/, then write its marker (returned) last.

    An older marker goes first, so that a copy cut short never sits next to a marker.
    """
    fs, path = open_location(_join(dst, lesson.name, MARKER))
    if fs.get_file_info(path).type == pafs.FileType.File:
        fs.delete_file(path)
    for name in OUTPUTS:
        write_bytes(dst, f"{lesson.name}/{name}", (folder / name).read_bytes())
    now = time.time()
    marker = {"lesson": lesson.name, "source": lesson.source, "finished": now,
              "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), "settings": settings}
    write_bytes(dst, f"{lesson.name}/{MARKER}", json.dumps(marker, indent=2, default=str).encode())
    return marker


def write_rejected(dst: str, rejected: list[tuple[str, str]]) -> None:
    """DST/rejected.csv: one (video, reason) row per video that gave no report (a header only if none)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["video", "reason"])
    writer.writerows(sorted(rejected))
    write_bytes(dst, "rejected.csv", buf.getvalue().encode())


def no_face_reason(summary: dict) -> str:
    """Why a video's timeline is empty, in words, from its summary."""
    an, video = summary["analysis"], summary["video"]
    frames = video["analysed_frames"]
    if not an["face_detections"]:
        return f"no face found in {frames} analysed frames ({an['detector']})"
    return (f"no person tracked: {an['face_detections']} face detections in {frames} analysed frames, but no track "
            f"lasted {an['min_track_s']:.2f} s")


class LessonAssembly:
    """One lesson's embedded chunks, which come back from the model actors in any order, fed in order to a
    `WindowAssembler` (the window buffer needs every track's features in time order).

    Args:
        window, stride: as in `analyze_video`.
        predictor_for: the model for a chunk's `dtype` (the temporal part runs on weights cast as the spatial
            stream's were, so it must match the actor that embedded the chunk).
    """

    def __init__(self, window: int, stride: int, predictor_for: Callable[[str], "Predictor"]) -> None:
        self.window, self.stride, self.predictor_for = window, stride, predictor_for
        self.observation: Observation | None = None
        self.model_s = 0.0  # the spatial stream's seconds, in the actors
        self._waiting: dict[int, FaceChunk] = {}
        self._next = 0
        self._last: int | None = None
        self._assembler: WindowAssembler | None = None
        self._dtype = ""

    def add(self, seq: int, chunk: FaceChunk, observation: Observation | None = None, model_s: float = 0.0) -> None:
        """Take chunk number `seq` (0, 1, ...); the final chunk brings the video's observation. A chunk seen before
        (from a retried task) is ignored."""
        if seq < self._next or seq in self._waiting:
            return
        self._waiting[seq] = chunk
        self.model_s += model_s
        if chunk.final:
            self._last, self.observation = seq, observation
        while self._next in self._waiting:
            c = self._waiting.pop(self._next)
            if self._assembler is None:
                self._assembler = WindowAssembler(self.predictor_for(c.dtype), self.window, self.stride)
                self._dtype = c.dtype
            elif c.dtype != self._dtype:
                log.warning("chunk %d was embedded in %s, the first in %s (mixed devices?)", self._next, c.dtype,
                            self._dtype)
            self._assembler.add(c)
            self._next += 1

    @property
    def done(self) -> bool:
        return self._last is not None and self._next > self._last

    @property
    def rows(self) -> list[dict]:
        return self._assembler.rows if self._assembler else []

    @property
    def seconds(self) -> float:
        """Model seconds: the spatial stream in the actors and the temporal part here."""
        return self.model_s + (self._assembler.seconds if self._assembler else 0.0)


def settings_of(predictor: "Predictor", **analysis: Any) -> dict:
    """What makes two analyses of a video the same: the model's provenance and the analysis options (face path,
    rates, window...). Each lesson's marker records them; a marker with other settings does not count as done."""
    return json.loads(json.dumps({"model": dict(predictor.info), **analysis}, default=str))
