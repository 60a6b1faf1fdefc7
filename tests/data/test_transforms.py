"""The one preprocessing path: decoding, validation, resizing/normalisation, frame choice, padding, augmentation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from classemo.data.transforms import (
    ClipAugment,
    FrameError,
    decode_image,
    frames_to_tensor,
    pad_clips,
    prepare_clip,
    select_frame_indices,
    validate_frames,
)
from classemo.preprocessing import ImageDecodeError


def _rgb(h: int = 20, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def test_decode_png_round_trip_is_rgb() -> None:
    img = _rgb()
    img[0, 0] = (255, 0, 0)  # pure red: would come back as blue if BGR leaked through
    out = decode_image(_png(img))
    assert out.dtype == np.uint8 and out.shape == (20, 24, 3)
    np.testing.assert_array_equal(out, img)


def test_decode_jpeg_and_grey_png_give_three_channels() -> None:
    ok, jpg = cv2.imencode(".jpg", _rgb(32, 32))
    assert ok
    assert decode_image(jpg.tobytes()).shape == (32, 32, 3)
    ok, grey = cv2.imencode(".png", np.full((8, 9), 77, np.uint8))
    out = decode_image(grey.tobytes())
    assert out.shape == (8, 9, 3) and (out == 77).all()


def test_decode_drops_alpha() -> None:
    rgba = np.dstack([_rgb(), np.zeros((20, 24), np.uint8)])  # fully transparent: alpha must not leak into pixels
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    assert ok
    np.testing.assert_array_equal(decode_image(png.tobytes()), rgba[..., :3])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"this is not an image at all", "not a decodable"),
        (None, "expected encoded image bytes"),
    ],
)
def test_decode_rejects_non_images(data: object, match: str) -> None:
    with pytest.raises(ImageDecodeError, match=match):
        decode_image(data)  # type: ignore[arg-type]


def test_decode_rejects_truncated_png() -> None:
    data = _png(_rgb(64, 64))
    with pytest.raises(ImageDecodeError):
        decode_image(data[: len(data) // 3])
    assert issubclass(ImageDecodeError, ValueError)


def test_frames_to_tensor_shape_and_normalisation() -> None:
    frames = [np.zeros((10, 12, 3), np.uint8), np.full((40, 30, 3), 255, np.uint8)]
    x = frames_to_tensor(frames, image_size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.full_like(x[0], -1.0))
    assert torch.allclose(x[1], torch.full_like(x[1], 1.0))
    # Channel order and per-channel statistics: pure red with per-channel mean/std.
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    y = frames_to_tensor([red], image_size=16, mean=(0.2, 0.4, 0.6), std=(0.1, 0.2, 0.3))
    expected = torch.tensor([(1 - 0.2) / 0.1, (0 - 0.4) / 0.2, (0 - 0.6) / 0.3])
    assert torch.allclose(y[0, :, 5, 5], expected, atol=1e-5)


def test_validate_frames_converts_grey_and_names_bad_frames() -> None:
    grey = np.full((6, 7), 9, np.uint8)
    out = validate_frames([grey, grey[..., None], _rgb()])
    assert [f.shape for f in out] == [(6, 7, 3), (6, 7, 3), (20, 24, 3)]
    assert validate_frames(np.stack([_rgb(), _rgb()]))[1].shape == (20, 24, 3)
    with pytest.raises(FrameError, match="clip 4, frame 1.*uint8.*float32"):
        validate_frames([_rgb(), _rgb().astype(np.float32)], where="clip 4")
    with pytest.raises(FrameError, match="clip 2, frame 0.*shape \\(5, 5, 4\\)"):
        validate_frames([np.zeros((5, 5, 4), np.uint8)], where="clip 2")
    with pytest.raises(FrameError, match="zero frames"):
        validate_frames([], where="clip 0")
    with pytest.raises(FrameError, match="numpy array"):
        validate_frames([[1, 2, 3]])  # type: ignore[list-item]
    assert issubclass(FrameError, ValueError)


def test_select_frame_indices() -> None:
    assert select_frame_indices(5, 8, train=False) == [0, 1, 2, 3, 4]
    assert select_frame_indices(5, 8, train=True) == [0, 1, 2, 3, 4]
    assert select_frame_indices(16, 4, train=False) == [2, 6, 10, 14]
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = select_frame_indices(37, 8, train=True, rng=rng)
        assert len(idx) == 8 and idx == sorted(idx) and len(set(idx)) == 8
        assert 0 <= idx[0] and idx[-1] < 37
    a = select_frame_indices(100, 8, train=True, rng=np.random.default_rng(1))
    b = select_frame_indices(100, 8, train=True, rng=np.random.default_rng(1))
    c = select_frame_indices(100, 8, train=True, rng=np.random.default_rng(2))
    assert a == b and a != c
    with pytest.raises(ValueError, match="at least one frame"):
        select_frame_indices(0, 8, train=False)


def test_pad_clips_mask_and_values() -> None:
    clips = [torch.ones(3, 3, 4, 4), torch.full((1, 3, 4, 4), 2.0), torch.full((5, 3, 4, 4), 3.0)]
    x, mask = pad_clips(clips, 5)
    assert x.shape == (3, 5, 3, 4, 4) and mask.dtype == torch.bool
    assert mask.tolist() == [[True] * 3 + [False] * 2, [True] + [False] * 4, [True] * 5]
    assert (x[0, :3] == 1).all() and (x[0, 3:] == 0).all() and (x[1, 0] == 2).all() and (x[2] == 3).all()
    feats, fmask = pad_clips([torch.ones(2, 7)], 4)
    assert feats.shape == (1, 4, 7) and fmask.sum() == 2
    with pytest.raises(ValueError, match="limit of num_frames=5"):
        pad_clips([torch.ones(6, 3, 4, 4)], 5)


def test_clip_augment_shares_params_across_frames() -> None:
    frame = _rgb(32, 32, seed=3)
    aug = ClipAugment(flip_p=0.5)
    for seed in range(6):
        out = aug([frame, frame.copy(), frame.copy()], np.random.default_rng(seed))
        assert all(o.shape == frame.shape and o.dtype == np.uint8 for o in out)
        # Identical input frames must stay identical: one draw per clip.
        np.testing.assert_array_equal(out[0], out[1])
        np.testing.assert_array_equal(out[0], out[2])
    outs = [aug([frame], np.random.default_rng(s))[0] for s in range(4)]
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])
    # With every effect off, augmentation is the identity.
    still = ClipAugment(flip_p=0.0, max_shift=0.0, max_scale=0.0, brightness=0.0, contrast=0.0)
    np.testing.assert_array_equal(still([frame], np.random.default_rng(0))[0], frame)


def test_prepare_clip_decodes_only_selected_frames() -> None:
    frames = [_png(np.full((12, 12, 3), 10 * i, np.uint8)) for i in range(10)]
    frames[0] = b"broken"  # never selected at eval time for 10 frames -> 4: centres are 1, 3, 6, 8
    x, idx = prepare_clip(frames, num_frames=4, image_size=8, train=False)
    assert idx == [1, 3, 6, 8] and x.shape == (4, 3, 8, 8)
    expected = torch.tensor([10 * i / 255.0 for i in idx]).sub(0.5).div(0.5)
    assert torch.allclose(x[:, 0, 0, 0], expected, atol=1e-6)
    with pytest.raises(ImageDecodeError):
        prepare_clip(frames, num_frames=16, image_size=8, train=False)
