"""Frame decoding: sampling rate, stills as 1-frame videos, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from classemo.video.decode import FrameStream, VideoError, iter_frames, probe_video
from helpers import MEDIA


def test_samples_at_the_analysis_rate() -> None:
    frames = list(iter_frames(MEDIA / "single_face.mp4", fps=5))
    # 72 frames at 30 fps is 2.4 s: every 6th frame, 12 in all, times 0.2 s apart.
    assert [i for i, _, _ in frames] == list(range(0, 72, 6))
    assert [round(t, 3) for _, t, _ in frames] == [round(0.2 * k, 3) for k in range(12)]
    assert frames[0][2].shape == (360, 640, 3)
    # Asking for more than the source rate gives every frame, not duplicates.
    assert len(list(iter_frames(MEDIA / "single_face.mp4", fps=1000))) == 72


def test_non_integer_source_rate() -> None:
    stream = FrameStream(MEDIA / "WolfgangLanger_Pexels.mp4", fps=5)
    times = [t for _, t, _ in stream]
    assert len(times) == stream.expected_samples
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) > 0.15 and max(gaps) < 0.25  # 23.976 fps source: gaps of 4 or 5 frames around 0.2 s
    assert stream.decoded == 472 and not stream.truncated


def test_still_image_is_a_one_frame_video() -> None:
    info = probe_video(MEDIA / "multi_face.jpg")
    assert info.is_image and info.frame_count == 1 and info.duration_s == 0.0
    frames = list(iter_frames(MEDIA / "multi_face.jpg"))
    assert len(frames) == 1 and frames[0][:2] == (0, 0.0) and frames[0][2].shape == (667, 1000, 3)


def test_not_a_video(tmp_path: Path) -> None:
    txt = tmp_path / "notes.mp4"
    txt.write_text("this is a lesson plan, not a video\n" * 50)
    with pytest.raises(VideoError, match="notes.mp4: cannot be opened as a video"):
        probe_video(txt)
    with pytest.raises(VideoError, match="no such file"):
        probe_video(tmp_path / "missing.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match="empty"):
        probe_video(tmp_path / "empty.mp4")
    bad_jpg = tmp_path / "photo.jpg"
    bad_jpg.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(VideoError, match="not a decodable image"):
        probe_video(bad_jpg)


def test_truncated_videos(tmp_path: Path) -> None:
    # single_face.mp4 keeps its index (moov) at the end: cut short, it cannot even be opened.
    data = (MEDIA / "single_face.mp4").read_bytes()
    cut = tmp_path / "cut_header.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="truncated"):
        list(iter_frames(cut))
    # WolfgangLanger's index is at the start: cut short, it decodes what is there and reports the truncation.
    data = (MEDIA / "WolfgangLanger_Pexels.mp4").read_bytes()
    cut = tmp_path / "cut_tail.mp4"
    cut.write_bytes(data[: int(len(data) * 0.3)])
    stream = FrameStream(cut, fps=5)
    frames = list(stream)
    assert 0 < len(frames) < stream.expected_samples and stream.truncated
    with pytest.raises(ValueError, match="fps must be > 0"):
        FrameStream(cut, fps=0)
