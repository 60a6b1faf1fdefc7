"""Compare the PyTorch FaceLandmark68Net port with face-api's own JavaScript on the same faces. Not part of the tests.

Setup, once (see scripts/check_landmark_parity.js; tfjs's pure-JS cpu backend, no native binaries):

    mkdir -p /tmp/fa && cd /tmp/fa && npm pack @vladmandic/face-api@1.7.15 && tar xzf vladmandic-face-api-1.7.15.tgz
    mkdir -p /tmp/fa-parity && cd /tmp/fa-parity && npm init -y \\
        && npm install @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0

Run from the repository root:

    python scripts/check_landmark_parity.py --package /tmp/fa/package --node-dir /tmp/fa-parity

The faces are YuNet's on tests/fixtures/media: single_face.jpg, the five of multi_face.jpg and those of one frame of
WolfgangLanger_Pexels.mp4. Three comparisons, each a max abs difference:
1. the net: face-api's and the port's outputs on the very same 112 x 112 input image, in pixels at 112 px;
2. the preprocessing: face-api's toBatchTensor of each crop against `face_input`'s image, in 0-255 levels;
3. the whole path: face-api's detectLandmarks on each crop against `LandmarkReader`, in pixels at 112 px (the
   crop's pixels scaled by 112 / its longer side). Where the crop's sides differ by an odd number of pixels,
   face-api's padToSquare puts the odd zero column (or row) after the image, but its postProcess subtracts half the
   difference, so its points sit half a crop pixel before where the net put them; `LandmarkReader` subtracts the
   padding actually added. The last column takes that half pixel off and leaves only the arithmetic.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from classemo.faces.detectors import YuNetDetector
from classemo.faces.landmarks import FaceLandmark68Net, LandmarkReader, face_input, load_landmark_net

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT / "tests" / "fixtures" / "media"
SIZE = FaceLandmark68Net.INPUT_SIZE


def frames() -> dict[str, np.ndarray]:
    """The two photos and the middle frame of WolfgangLanger_Pexels.mp4, by file name."""
    video = cv2.VideoCapture(str(MEDIA / "WolfgangLanger_Pexels.mp4"))
    video.set(cv2.CAP_PROP_POS_FRAMES, video.get(cv2.CAP_PROP_FRAME_COUNT) // 2)
    ok, frame = video.read()
    video.release()
    if not ok:
        raise SystemExit("could not read a frame of WolfgangLanger_Pexels.mp4")
    images = {name: cv2.imread(str(MEDIA / name)) for name in ("single_face.jpg", "multi_face.jpg")}
    return {**images, "WolfgangLanger_Pexels.mp4": frame}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, required=True, help="the unpacked @vladmandic/face-api 1.7.15")
    parser.add_argument("--node-dir", type=Path, required=True, help="folder whose node_modules holds tfjs 4.22.0")
    args = parser.parse_args()

    detector, reader, net = YuNetDetector(), LandmarkReader(), load_landmark_net()
    cases, crops, inputs, ours = [], [], [], []
    for name, frame in frames().items():
        boxes = detector.detect(frame)
        marks = reader(frame, boxes)
        for box, points in zip(boxes, marks):
            x0, y0 = max(0, box.x), max(0, box.y)
            crop = frame[y0:box.y + box.h, x0:box.x + box.w]
            cases.append({"name": name, "height": crop.shape[0], "width": crop.shape[1]})
            crops.append(crop)
            inputs.append(face_input(crop)[0])
            ours.append(points - (x0, y0))  # crop pixels, as face-api's detectLandmarks gives them
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "cases.json").write_text(json.dumps(cases))
        np.stack(inputs).astype(np.float32).tofile(work / "inputs.bin")
        for i, crop in enumerate(crops):
            np.ascontiguousarray(crop[..., ::-1]).tofile(work / f"crop_{i}.bin")
        subprocess.run(["node", str(ROOT / "scripts" / "check_landmark_parity.js"), str(args.package),
                        str(args.node_dir), str(work)], check=True)
        js_net = np.fromfile(work / "net.bin", dtype=np.float32).reshape(-1, 68, 2)
        js_inputs = np.fromfile(work / "tf_inputs.bin", dtype=np.float32).reshape(-1, SIZE, SIZE, 3)
        js_marks = np.fromfile(work / "pipeline.bin", dtype=np.float32).reshape(-1, 68, 2)
        versions = json.loads((work / "versions.json").read_text())

    batch = (np.stack(inputs) - np.asarray(FaceLandmark68Net.MEAN_RGB, dtype=np.float32)) / 255.0
    with torch.inference_mode():
        torch_net = net(torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()).numpy()
    scale = SIZE / np.asarray([max(c["height"], c["width"]) for c in cases], dtype=np.float32)
    net_px = np.abs(torch_net - js_net).max(axis=(1, 2)) * SIZE
    input_levels = np.abs(np.stack(inputs) - js_inputs).max(axis=(1, 2, 3))
    path_px = np.abs(np.stack(ours) - js_marks).max(axis=(1, 2)) * scale
    half_pixel = np.zeros((len(cases), 1, 2), dtype=np.float32)  # face-api's offset on the padded axis
    for i, c in enumerate(cases):
        half_pixel[i, 0, int(c["width"] > c["height"])] = 0.5 * (abs(c["width"] - c["height"]) % 2)
    rest_px = np.abs(np.stack(ours) - half_pixel - js_marks).max(axis=(1, 2)) * scale
    print(f"face-api {versions['faceapi']}, tfjs {versions['tfjs']} ({versions['backend']} backend), torch "
          f"{torch.__version__}")
    print(f"{'face':<26} {'crop':>9} {'net px@112':>11} {'input 0-255':>12} {'path px@112':>12} {'less 1/2 px':>12}")
    for case, *errors in zip(cases, net_px, input_levels, path_px, rest_px):
        print(f"{case['name']:<26} {case['width']:>4}x{case['height']:<4}", *(f"{e:>11.2e}" for e in errors))
    print(f"max over {len(cases)} faces: net {net_px.max():.2e} px, input {input_levels.max():.2e} levels, "
          f"path {path_px.max():.2e} px, {rest_px.max():.2e} px without face-api's half pixel (at 112 px)")


if __name__ == "__main__":
    main()
