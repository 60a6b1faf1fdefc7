"""One image decode everywhere: a phone photo (EXIF orientation) gives the same upright pixels through Serve's
request decoding, training's decoder, the video pipeline's still-image reader and the dataset converter.

No Ray cluster: Serve's decoding is a plain function of the gateway module.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classemo.data.convert import read_image
from classemo.data.transforms import decode_image
from classemo.video.decode import iter_frames

ROTATE_90_CW = 6  # EXIF Orientation (tag 0x0112): the stored pixels must be turned 90 degrees clockwise to view


def _phone_jpeg(path: Path) -> np.ndarray:
    """Write a 24x40 JPEG stored sideways (Orientation 6) and return the RGB image a viewer shows: 40x24, with
    the red band that is stored on the left at the top."""
    stored = np.full((24, 40, 3), 40, np.uint8)
    stored[:, :12] = (230, 20, 20)  # red band on the stored image's left
    exif = Image.Exif()
    exif[0x0112] = ROTATE_90_CW
    Image.fromarray(stored).save(path, "JPEG", quality=95, exif=exif)
    return np.rot90(stored, k=-1)  # (40, 24, 3): clockwise, the left edge becomes the top


def test_exif_orientation_is_applied_the_same_way_everywhere(tmp_path: Path) -> None:
    from serve.gateway import _decode_frame
    from serve.schemas import ServeArgs

    photo = tmp_path / "phone.jpg"
    upright = _phone_jpeg(photo)
    data = photo.read_bytes()

    training = decode_image(data)
    served = _decode_frame(base64.b64encode(data).decode(), "clip 0, frame 0", ServeArgs())
    ((_, _, video_bgr),) = list(iter_frames(photo))
    converted_bgr = read_image(photo)

    assert training.shape == upright.shape == (40, 24, 3)
    np.testing.assert_array_equal(served, training)
    np.testing.assert_array_equal(video_bgr[..., ::-1], training)
    np.testing.assert_array_equal(converted_bgr[..., ::-1], training)
    # Upright, not merely decoded: JPEG is lossy, so compare with the viewer's image to a JPEG's tolerance.
    assert np.abs(training.astype(int) - upright).mean() < 4
    assert training[:10, :, 0].mean() > 200 and training[-10:, :, 0].mean() < 80


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_serve_reads_greyscale_and_alpha_as_training_does(mode: str) -> None:
    from serve.gateway import _decode_frame
    from serve.schemas import ServeArgs

    rng = np.random.default_rng(0)
    shape = (16, 20) if mode == "L" else (16, 20, 4)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buf, "PNG")
    served = _decode_frame(base64.b64encode(buf.getvalue()).decode(), "clip 0, frame 0", ServeArgs())
    assert served.shape == (16, 20, 3) and served.dtype == np.uint8
    np.testing.assert_array_equal(served, decode_image(buf.getvalue()))
