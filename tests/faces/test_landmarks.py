"""The 68-point landmark net shipped in the package: face-api's numbers, real faces, small faces, odd boxes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from classemo.faces import FaceBox, YuNetDetector
from classemo.faces.landmarks import (EYES, LANDMARK_SHA256, LEFT_EYE, MOUTH, NOSE_TIP, RIGHT_EYE, FaceLandmark68Net,
                                      LandmarkReader, face_input, load_landmark_net, packaged_landmark_path)
from helpers import MEDIA, REPO

# face-api 1.7.15's own net (tfjs 4.22.0, cpu backend; scripts/check_landmark_parity.js) on face_input() of
# single_face.jpg's YuNet box: points 8, 30, 36, 45, 48 and 54 in pixels of the 112 px input.
SINGLE_FACE_BOX = FaceBox(193, 143, 179, 260)
FACE_API_POINTS = {8: (53.923, 109.872), 30: (48.254, 67.023), 36: (26.276, 43.786), 45: (74.983, 43.082),
                   48: (35.317, 80.317), 54: (70.446, 78.961)}


@pytest.fixture(scope="module")
def reader() -> LandmarkReader:
    return LandmarkReader()


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, FaceBox]:
    image = cv2.imread(str(MEDIA / "single_face.jpg"))
    assert image is not None
    (box,) = YuNetDetector().detect(image)
    return image, box


def test_packaged_weights_are_the_recorded_file() -> None:
    p = packaged_landmark_path()
    assert p.is_file() and p.parent.parent == REPO / "classemo" / "faces"
    assert hashlib.sha256(p.read_bytes()).hexdigest() == LANDMARK_SHA256
    licence = (p.parent / "LICENSE-face-api").read_text()
    assert licence.count("\nMIT License\n") == 2 and "Vincent Mühler" in licence and "Vladimir Mandic" in licence
    assert "FaceLandmark68Net" in (p.parent / "NOTICE.md").read_text()
    assert load_landmark_net() is load_landmark_net()  # one instance per process


def test_net_shape_and_input_size() -> None:
    net = load_landmark_net()
    assert not net.training
    with torch.inference_mode():
        out = net(torch.randn(3, 3, 112, 112))
        assert out.shape == (3, 68, 2) and out.dtype == torch.float32 and torch.isfinite(out).all()
        with pytest.raises(ValueError, match="112"):
            net(torch.randn(1, 3, 96, 96))


def test_the_port_gives_face_api_numbers() -> None:
    image = cv2.imread(str(MEDIA / "single_face.jpg"))
    b = SINGLE_FACE_BOX
    x = (face_input(image[b.y:b.y + b.h, b.x:b.x + b.w])[0] - FaceLandmark68Net.MEAN_RGB) / 255.0
    with torch.inference_mode():
        points = load_landmark_net()(torch.from_numpy(x).float().permute(2, 0, 1)[None])[0].numpy() * 112
    for i, expected in FACE_API_POINTS.items():
        np.testing.assert_allclose(points[i], expected, atol=0.01, err_msg=f"point {i}")


def test_face_input_pads_like_face_api() -> None:
    crop = np.full((112, 111, 3), 200, np.uint8)  # one column short of square
    crop[..., 0] = 10  # blue, so the RGB order shows
    image, side, left, top = face_input(crop)
    assert image.shape == (112, 112, 3) and image.dtype == np.float32 and (side, left, top) == (112, 0, 0)
    # padToSquare adds Math.round(diff / 2) zeros after the image: the odd column goes on the right
    assert (image[:, 111] == 0).all() and (image[:, :111, 2] == 10).all() and (image[:, :111, :2] == 200).all()


def test_points_of_a_real_face(reader: LandmarkReader, face: tuple[np.ndarray, FaceBox]) -> None:
    image, box = face
    points = reader(image, [box])
    assert points.shape == (1, 68, 2) and points.dtype == np.float32
    p, yunet = points[0], np.asarray(box.landmarks)
    pad = 0.1 * np.array([box.w, box.h])
    assert (p >= [box.x, box.y] - pad).all() and (p <= [box.x + box.w, box.y + box.h] + pad).all()
    assert p[EYES, 1].max() < p[MOUTH, 1].min()
    # Subject's terms, as YuNet's: the subject's right eye (36-41) is on the image's left.
    assert p[RIGHT_EYE, 0].mean() < p[LEFT_EYE, 0].mean() and yunet[0, 0] < yunet[1, 0]
    assert np.linalg.norm(p[NOSE_TIP] - yunet[2]) < 0.15 * box.w
    for group, yunet_eye in ((RIGHT_EYE, yunet[0]), (LEFT_EYE, yunet[1])):
        assert np.linalg.norm(p[group].mean(axis=0) - yunet_eye) < 0.1 * box.w


def test_a_30_px_face_keeps_its_points(reader: LandmarkReader, face: tuple[np.ndarray, FaceBox]) -> None:
    image, box = face
    s = 30 / box.w
    small = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    small_box = FaceBox(round(box.x * s), round(box.y * s), round(box.w * s), round(box.h * s))
    assert small_box.w == 30
    full, shrunk = reader(image, [box])[0], reader(small, [small_box])[0] / s
    assert np.linalg.norm(shrunk - full, axis=1).max() < 0.1 * box.w


def test_no_boxes(reader: LandmarkReader, face: tuple[np.ndarray, FaceBox]) -> None:
    out = reader(face[0], [])
    assert out.shape == (0, 68, 2) and out.dtype == np.float32


def test_boxes_off_the_frame_give_nan_rows(reader: LandmarkReader, face: tuple[np.ndarray, FaceBox]) -> None:
    image, box = face
    h, w = image.shape[:2]
    boxes = [FaceBox(box.x, box.y, 0, box.h), box, FaceBox(w + 5, 10, 50, 50), FaceBox(-40, h - 60, 120, 100)]
    out = reader(image, boxes)
    assert out.shape == (4, 68, 2)
    assert np.isnan(out[[0, 2]]).all() and np.isfinite(out[[1, 3]]).all()
    # a face's row does not depend on the others in the batch
    np.testing.assert_allclose(out[1], reader(image, [box])[0], atol=1e-3)


def test_wrong_or_missing_weights_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "landmark68.npz"
    data = bytearray(packaged_landmark_path().read_bytes())
    data[len(data) // 2] ^= 1  # one bit of one weight
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"landmark68\.npz: SHA-256 .* is not the FaceLandmark68Net weights"):
        load_landmark_net(bad)
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_landmark_net(tmp_path / "nope.npz")
