"""The face path on real faces: YuNet shipped in the package, landmark alignment, bad input, settings."""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from classemo.faces import (FaceBox, FaceInputError, FacePath, FaceSettings, YuNetDetector, align_face, eye_angle,
                            legacy_settings, make_detector, packaged_yunet_path, warn_if_different)
from classemo.faces.detectors import YUNET_SHA256
from helpers import MEDIA, REPO

STILLS = ("0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "0-f1-su-ph.jpg", "45-m7-di-ph.jpg")


@pytest.fixture(scope="module")
def path() -> FacePath:
    return FacePath()


def _media(name: str) -> np.ndarray:
    image = cv2.imread(str(MEDIA / name))
    assert image is not None, name
    return image


def _rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


def test_packaged_model_is_the_recorded_file() -> None:
    p = packaged_yunet_path()
    assert p.is_file() and p.parent.parent == REPO / "classemo" / "faces"
    assert hashlib.sha256(p.read_bytes()).hexdigest() == YUNET_SHA256
    assert "Apache License" in (p.parent / "LICENSE-yunet").read_text()
    assert "Apache" in (p.parent / "NOTICE.md").read_text()


@pytest.mark.slow
def test_wheel_ships_the_model_and_detects_from_the_install(tmp_path: Path) -> None:
    """Build a wheel from the project's own files, install it into an empty folder and detect from there."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "classemo", src / "classemo", ignore=shutil.ignore_patterns("__pycache__"))
    run = dict(check=True, capture_output=True, text=True, timeout=300)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(src)], **run)
    wheel = next((tmp_path / "dist").glob("classemo-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for f in ("yunet_n_640_640.onnx", "LICENSE-yunet", "NOTICE.md"):
        assert f"classemo/faces/assets/{f}" in names
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)], **run)
    code = ("import sys, cv2, classemo.faces as f; p = f.packaged_yunet_path(); "
            f"assert str(p).startswith({str(site)!r}), p; "
            f"print(len(f.FacePath().faces(cv2.imread({str(MEDIA / 'multi_face.jpg')!r}))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(site)}, **run)
    assert out.stdout.strip() == "5"


def test_faces_of_the_media_photos(path: FacePath) -> None:
    faces = path.faces(_media("multi_face.jpg"))
    assert len(faces) == 5 and all(f.aligned for f in faces)
    assert [f.box.area for f in faces] == sorted((f.box.area for f in faces), reverse=True)
    for name in (*STILLS, "single_face.jpg"):
        found = path.faces(_media(name))
        assert len(found) == 1, name
        assert found[0].crop.shape == (112, 112, 3) and found[0].crop.dtype == np.uint8
        marks = np.asarray(found[0].box.landmarks)
        assert marks[0, 0] < marks[1, 0]  # the subject's right eye is on the image's left, as the template has it


def test_no_face_video_has_no_faces(path: FacePath) -> None:
    cap = cv2.VideoCapture(str(MEDIA / "no_face.mp4"))
    seen = 0
    while (r := cap.read())[0]:
        assert path.faces(r[1]) == [], f"a face in frame {seen} of no_face.mp4"
        seen += 1
    assert seen > 50


@pytest.mark.parametrize("degrees", [20, -20])
def test_alignment_levels_the_eyes_of_a_rotated_face(path: FacePath, degrees: float) -> None:
    rotated = _rotate(_media("single_face.jpg"), degrees)
    (face,) = path.faces(rotated)
    assert abs(eye_angle(face.box.landmarks)) > 10  # the input really is tilted
    # Find the eyes again on the aligned crop (enlarged, with context for the detector): they must be level.
    big = cv2.copyMakeBorder(cv2.resize(face.crop, (224, 224)), 112, 112, 112, 112, cv2.BORDER_REPLICATE)
    (again,) = make_detector("yunet").detect(big)
    assert abs(eye_angle(again.landmarks)) <= 3.0


def test_alignment_is_deterministic() -> None:
    image = _media("multi_face.jpg")
    first = [f.crop for f in FacePath().faces(image)]
    second = [f.crop for f in FacePath().faces(image.copy())]
    assert len(first) == 5 and all(np.array_equal(a, b) for a, b in zip(first, second))


def test_grey_and_alpha_images_are_read(path: FacePath) -> None:
    image = _media("single_face.jpg")
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    assert len(path.faces(grey)) == 1 and path.faces(grey)[0].crop.shape == (112, 112, 3)
    assert np.array_equal(path.faces(bgra)[0].crop, path.faces(image)[0].crop)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((0, 10, 3), np.uint8), "with pixels"),
    (np.zeros((10, 10, 3), np.float32), "8-bit"),
    (np.zeros((10, 10, 2), np.uint8), "channels"),
    ("not an image", "image array"),
])
def test_unreadable_images_get_a_clear_error(path: FacePath, bad: object, message: str) -> None:
    with pytest.raises(FaceInputError, match=message):
        path.faces(bad)  # type: ignore[arg-type]


def test_face_cut_by_the_border_is_cropped(path: FacePath) -> None:
    image = _media("single_face.jpg")
    (face,) = path.faces(image)
    # Keep only the right part of the face: its left eye and mouth corner fall outside the new image.
    x_cut = int(np.asarray(face.box.landmarks)[:, 0].min()) + 5
    cut = np.ascontiguousarray(image[:, x_cut:])
    found = path.faces(cut)
    for f in found:
        assert f.crop.shape == (112, 112, 3)
    # The landmarks of the original, shifted, lie partly outside the cut image: aligning on them still crops.
    marks = np.asarray(face.box.landmarks) - [x_cut, 0]
    assert (marks[:, 0] < 0).any()
    crop = align_face(cut, marks, size=64)
    assert crop.shape == (64, 64, 3)


def test_tiny_faces_are_skipped_and_counted() -> None:
    image = _media("multi_face.jpg")
    small = cv2.resize(image, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)  # faces ~20-27 px
    strict = FacePath(FaceSettings(min_face=40))
    assert strict.faces(small) == [] and strict.too_small >= 3
    assert len(FacePath(FaceSettings(min_face=8)).detect(small)) >= 3


def test_missing_or_corrupt_model_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="YuNet model not found"):
        YuNetDetector(tmp_path / "nope.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not an onnx model" * 10)
    with pytest.raises(ValueError, match="corrupt.onnx: OpenCV could not load it"):
        YuNetDetector(corrupt)
    with pytest.raises(ValueError, match="corrupt.onnx"):
        FacePath(FaceSettings(model_path=str(corrupt)))


def test_unusable_landmarks_fall_back_to_the_box(path: FacePath) -> None:
    image = _media("single_face.jpg")
    box = FaceBox(100, 100, 200, 200, 0.9, landmarks=((150.0, 150.0),) * 5)  # both eyes on one point
    crop, aligned = path.crop(image, box)
    assert crop.shape == (112, 112, 3) and not aligned
    with pytest.raises(ValueError, match="cannot align"):
        align_face(image, [(0.0, 0.0)] * 5)


def test_settings_round_trip_legacy_and_warnings(caplog: pytest.LogCaptureFixture) -> None:
    s = FaceSettings(margin=0.3, size=64)
    assert FaceSettings.from_dict(s.to_dict()) == s
    assert FaceSettings.from_dict(None, size=48) == legacy_settings(48)
    assert legacy_settings().detector == "haar" and not legacy_settings().align
    with pytest.raises(ValueError, match="alignment needs landmarks"):
        FaceSettings(detector="haar", align=True)
    with pytest.raises(ValueError, match="unknown face settings"):
        FaceSettings.from_dict({"detector": "yunet", "colour": "blue"})
    with pytest.raises(ValueError, match="unknown face detector"):
        FaceSettings(detector="mtcnn")
    assert warn_if_different(s, FaceSettings(margin=0.3, size=64, max_side=960), "same crops") is None
    with caplog.at_level(logging.WARNING):
        msg = warn_if_different(legacy_settings(64), s, "mixed")
    assert msg is not None and "detector: 'haar' here vs 'yunet' in training" in msg and "mixed" in caplog.text


def test_haar_stays_selectable() -> None:
    haar = FacePath(FaceSettings(detector="haar", align=False))
    faces = haar.faces(_media("single_face.jpg"))
    assert len(faces) == 1 and faces[0].box.landmarks is None and not faces[0].aligned
