"""One face path: a photo converted into a dataset and the same photo analysed give byte-identical crops (Serve's side
is in tests/serve/test_serve.py::test_detect_faces_uses_the_models_face_path)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from classemo.data.convert_images import convert_images
from classemo.data.format import SPLITS, read_split
from classemo.video.pipeline import analyze_video
from helpers import MEDIA


def test_converter_and_analyze_cut_the_same_crop(tmp_path: Path, tiny_predictor) -> None:
    src = tmp_path / "photos"
    src.mkdir()
    for name in ("single_face.jpg", "multi_face.jpg"):
        (src / name).write_bytes((MEDIA / name).read_bytes())
    (src / "labels.csv").write_text("image,label\nsingle_face.jpg,happy\nmulti_face.jpg,happy\n")
    face = tiny_predictor.face_settings
    manifest, _ = convert_images(src, str(tmp_path / "data"), image_size=face.size, margin=face.margin,
                                 progress=False)
    assert manifest.face == face.to_dict()  # what the dataset records is what the model crops with
    stored = {}
    for split in SPLITS:
        table = read_split(tmp_path / "data", split)
        for clip_id, frames in zip(table.column("clip_id").to_pylist(), table.column("frames").to_pylist()):
            stored[clip_id] = cv2.imdecode(np.frombuffer(frames[0], np.uint8), cv2.IMREAD_COLOR)
    for name in ("single_face", "multi_face"):
        res = analyze_video(src / f"{name}.jpg", tiny_predictor, out_dir=tmp_path / name, save_crops=True,
                            progress=False)
        assert res.summary["analysis"]["face"] == face.to_dict()
        crops = sorted((tmp_path / name / "crops").rglob("*.png"))
        # The converter keeps the largest face; analyze saves every face, the largest one among them.
        assert any(np.array_equal(cv2.imread(str(c)), stored[name]) for c in crops), name
