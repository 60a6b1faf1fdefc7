"""LiveSource on real inputs: a file at its own speed (a slow analysis drops frames, the lag stays bounded), a file
read whole (the frames FrameStream samples), MJPEG over HTTP on 127.0.0.1 (a dropped connection is reopened and the
gap recorded), and sources that cannot be opened."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from classemo.live.source import LiveSource, SourceError, parse_source
from classemo.video.decode import FrameStream
from mjpeg import index_of


def test_a_file_read_whole_gives_the_frames_framestream_samples(small_video: Path) -> None:
    live = [(i, t) for i, t, _ in LiveSource(str(small_video), fps=5.0, realtime=False)]
    recorded = [(i, t) for i, t, _ in FrameStream(small_video, fps=5.0)]
    assert live == recorded and len(live) == 18


def test_a_slow_analysis_drops_the_oldest_frames_and_never_lags(small_video: Path) -> None:
    """Played at 10 fps, sampled at 10 fps, analysed at ~4 fps: frames are dropped, counted, and the one the analysis
    gets is always one of the newest two."""
    source = LiveSource(str(small_video), fps=10.0, realtime=True, queue_size=2)
    start, lags, seen = time.monotonic(), [], []
    for index, t, frame in source:
        lags.append((time.monotonic() - start) - t)  # how far behind the stream this frame is
        seen.append(index)
        assert index_of(frame) == index
        time.sleep(0.25)
    assert source.dropped > 0 and source.dropped + len(seen) == source.decoded == 36
    assert seen == sorted(seen)
    # At most the queue's two frames of analysis behind plus slack for a loaded machine; unbounded, the lag would
    # reach ~5 s by the end (36 frames at 0.25 s of analysis each against 3.6 s of video).
    assert max(lags) < 1.0
    health = source.health()
    assert health.dropped == source.dropped and health.analysed == len(seen) and health.gaps == []


def test_mjpeg_over_http_reconnects_after_a_drop_and_records_the_gap(mjpeg_server) -> None:
    mjpeg_server.per_connection = 15  # the camera drops its client every 15 frames (0.75 s)
    source = LiveSource(mjpeg_server.url, fps=10.0, backoff_s=0.2, max_seconds=3.0)
    frames = [(t, index_of(f)) for _, t, f in source]
    assert mjpeg_server.connections >= 3 and len(source.gaps) >= 2
    assert all(g.end_s is not None and g.end_s >= g.start_s for g in source.gaps)
    assert source.health().connected and source.error is None
    times = [t for t, _ in frames]
    assert times == sorted(times) and times[-1] > 1.5  # frames keep coming after each drop


def test_a_stream_that_does_not_come_back_ends_with_its_reason(mjpeg_server) -> None:
    mjpeg_server.per_connection = 10
    source = LiveSource(mjpeg_server.url, fps=10.0, retries=2, backoff_s=0.1)
    it = iter(source)
    next(it)
    mjpeg_server.refuse = True
    rest = list(it)  # ends instead of hanging
    assert len(rest) < 12 and "did not come back after 2 retries" in source.error
    assert not source.health().connected


def test_sources_that_cannot_be_opened_say_so_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot open http://127.0.0.1:9/"):
        LiveSource("http://127.0.0.1:9/stream.mjpg")
    with pytest.raises(SourceError, match="not a camera index, a stream URL"):
        LiveSource(str(tmp_path / "missing.mp4"))
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    with pytest.raises(SourceError, match="notes.mp4"):
        LiveSource(str(not_video))
    assert parse_source("0") == 0 and parse_source("rtsp://cam/1") == "rtsp://cam/1"
