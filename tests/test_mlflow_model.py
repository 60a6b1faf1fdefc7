"""The pyfunc's frame decoding accepts what MLflow hands it: raw bytes, base64 text or base64 text as bytes."""

import base64

import cv2
import numpy as np
import pytest

from classemo.data.transforms import decode_image
from classemo.preprocessing import ImageDecodeError
from classemo.mlflow_model import _as_bytes


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_frames_arrive_raw_or_base64(ext: str) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)  # big enough to wrap
    encoded = cv2.imencode(ext, noise)[1].tobytes()
    text = base64.b64encode(encoded)
    wrapped = base64.encodebytes(encoded)  # MIME style: a line break every 76 characters
    assert b"\n" in wrapped[:-1] or len(text) <= 76
    for form in (encoded, text, text.decode(), wrapped, wrapped.decode()):
        assert _as_bytes(form) == encoded
    assert decode_image(_as_bytes(wrapped)).shape == (32, 32, 3)


def test_junk_is_left_for_the_decoder_to_name() -> None:
    with pytest.raises(ImageDecodeError, match="not a decodable"):
        decode_image(_as_bytes(b"not an image at all!"))
