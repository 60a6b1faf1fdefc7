"""The one preprocessing path: decoding, validation, resizing/normalisation, frame choice, padding, augmentation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from classemo.data.augmentations import AugmentChain, ClassroomAugment, ClipAugment
from classemo.data.transforms import (
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


_OFF = dict(downcast_p=0.0, occlude_p=0.0, blur_p=0.0, small_p=0.0, jpeg_p=0.0)


def _only(**kwargs: object) -> ClassroomAugment:
    """ClassroomAugment with every degradation off but the ones named."""
    return ClassroomAugment(**{**_OFF, **kwargs})


def _grey_face(side: int = 48, seed: int = 0) -> np.ndarray:
    """A grey-as-RGB frame with detail at every scale: smooth shading plus fine noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    grey = 120 + 60 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + rng.normal(0, 25, (side, side))
    return cv2.cvtColor(np.clip(grey, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)


def _sharpness(frame: np.ndarray) -> float:
    return float(cv2.Laplacian(frame[..., 0].astype(np.float64), cv2.CV_64F).var())


@pytest.mark.parametrize("frame", [_grey_face(48), _rgb(64, 80, seed=5)], ids=["grey48", "rgb64x80"])
def test_classroom_augment_keeps_shape_and_shares_the_draw(frame: np.ndarray) -> None:
    every = ClassroomAugment(downcast_p=1.0, occlude_p=1.0, blur_p=1.0, small_p=1.0, jpeg_p=1.0)
    default = ClassroomAugment()
    changed = 0
    for seed in range(8):
        for aug in (every, default):
            out = aug([frame, frame.copy(), frame.copy()], np.random.default_rng(seed))
            assert len(out) == 3 and all(o.shape == frame.shape and o.dtype == np.uint8 for o in out)
            # One draw per clip: identical frames in, identical frames out.
            np.testing.assert_array_equal(out[0], out[1])
            np.testing.assert_array_equal(out[0], out[2])
            changed += not np.array_equal(out[0], frame)
    assert changed >= 9  # every clip with all five on, and some of the default's
    if (frame[..., 0] == frame[..., 1]).all():  # a grey face stays grey (JPEG codes it without chroma)
        out = every([frame], np.random.default_rng(0))[0]
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_classroom_augment_off_is_the_identity() -> None:
    frame = _grey_face()
    for seed in range(5):
        out = ClassroomAugment(**_OFF)([frame, _rgb(48, 48)], np.random.default_rng(seed))
        np.testing.assert_array_equal(out[0], frame)
        np.testing.assert_array_equal(out[1], _rgb(48, 48))


@pytest.mark.parametrize("effect", [dict(small_p=1.0, small_side=(16, 16)), dict(blur_p=1.0, blur_sigma=(1.0, 1.0))],
                         ids=["small", "blur"])
def test_small_and_blur_lose_fine_detail(effect: dict) -> None:
    frame = _grey_face()
    out = _only(**effect)([frame], np.random.default_rng(0))[0]
    assert _sharpness(out) < 0.3 * _sharpness(frame)
    assert abs(float(out.mean()) - float(frame.mean())) < 3  # the face is softened, not darkened or moved


def test_small_leaves_a_frame_already_that_small() -> None:
    frame = _grey_face(16)
    np.testing.assert_array_equal(_only(small_p=1.0, small_side=(16, 40))([frame], np.random.default_rng(0))[0], frame)


def test_jpeg_at_quality_30_changes_pixels_but_not_the_face() -> None:
    frame = _grey_face()
    out = _only(jpeg_p=1.0, jpeg_quality=(30, 30))([frame], np.random.default_rng(0))[0]
    diff = np.abs(out.astype(int) - frame.astype(int))
    assert (diff > 0).mean() > 0.5 and diff.mean() < 25
    hi = _only(jpeg_p=1.0, jpeg_quality=(90, 90))([frame], np.random.default_rng(0))[0]
    assert np.abs(hi.astype(int) - frame.astype(int)).mean() < diff.mean()  # quality 90 loses less


def _bright_span(frame: np.ndarray, axis: int) -> tuple[int, int]:
    idx = np.flatnonzero((frame[..., 0] > 127).any(axis=axis))
    return int(idx[0]), int(idx[-1])


def test_downcast_widens_the_top_shortens_the_chin_and_keeps_the_centre() -> None:
    top, centre, chin = (np.zeros((48, 48, 3), np.uint8) for _ in range(3))
    top[3:7, 6:42] = 255  # a brow line
    centre[22:26, 22:26] = 255  # the nose
    chin[40:44, 8:40] = 255  # the chin
    aug = _only(downcast_p=1.0, downcast_pitch=(25.0, 25.0))
    out_top, out_centre, out_chin = aug([top, centre, chin], np.random.default_rng(0))
    x0, x1 = _bright_span(out_top, axis=0)
    assert x0 < 6 and x1 > 41 and x1 - x0 >= 38  # the top edge's content moves outward on both sides (was 6-41)
    ys, xs = np.nonzero(out_centre[..., 0] > 127)
    assert abs(ys.mean() - 23.5) < 1.0 and abs(xs.mean() - 23.5) < 1.0
    y0, _ = _bright_span(out_chin, axis=1)
    cx0, cx1 = _bright_span(out_chin, axis=0)
    assert y0 <= 40 - 2 and cx0 > 8 and cx1 < 39  # the chin rises and narrows (was rows 40-43, columns 8-39)
    # No pitch, no warp.
    flat = _only(downcast_p=1.0, downcast_pitch=(0.0, 0.0))([top], np.random.default_rng(0))[0]
    np.testing.assert_array_equal(flat, top)


def test_occlusion_is_a_flat_patch_at_the_bottom_or_a_side() -> None:
    frame = _rgb(48, 48, seed=7)
    aug = _only(occlude_p=1.0, occlude_area=(0.1, 0.3))
    edges = set()
    for seed in range(30):
        out = aug([frame, frame.copy()], np.random.default_rng(seed))
        np.testing.assert_array_equal(out[0], out[1])
        ys, xs = np.nonzero((out[0] != frame).any(axis=2))
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        patch = out[0][y0:y1, x0:x1]
        assert (patch == patch[0, 0]).all()  # one flat colour: a grey, or the clip's mean
        assert 0.09 <= (y1 - y0) * (x1 - x0) / (48 * 48) <= 0.32
        assert y1 == 48 or x0 == 0 or x1 == 48
        edges.add("bottom" if y1 == 48 else "side")
    assert edges == {"bottom", "side"}


@pytest.mark.parametrize(("kwargs", "field"), [
    (dict(small_side=(40, 16)), "small_side"),
    (dict(jpeg_quality=(0, 50)), "jpeg_quality"),
    (dict(occlude_area=(0.2, 0.9)), "occlude_area"),
    (dict(downcast_pitch=(30.0, 10.0)), "downcast_pitch"),
    (dict(blur_sigma=(-1.0, 1.0)), "blur_sigma"),
    (dict(blur_p=1.5), "blur_p"),
    (dict(downcast_distance=0.5), "downcast_distance"),
])
def test_classroom_augment_rejects_bad_ranges(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"ClassroomAugment.{field} "):
        ClassroomAugment(**kwargs)


def test_augment_chain_runs_classroom_after_clip_augment() -> None:
    frame = _grey_face()
    geometry = ClipAugment(flip_p=1.0, max_shift=0.0, max_scale=0.0, brightness=0.0, contrast=0.0)
    camera = _only(jpeg_p=1.0, jpeg_quality=(40, 40))
    out = AugmentChain((geometry, camera))([frame], np.random.default_rng(0))[0]
    np.testing.assert_array_equal(out, camera([frame[:, ::-1]], np.random.default_rng(0))[0])
