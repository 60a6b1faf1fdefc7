"""Convert face-api's FaceLandmark68Net weights into the npz that classemo.faces.landmarks loads.

    npm pack @vladmandic/face-api@1.7.15          # -> vladmandic-face-api-1.7.15.tgz (12.7 MB, MIT)
    python scripts/build_landmark_weights.py vladmandic-face-api-1.7.15.tgz

The tarball's `model/face_landmark_68_model.bin` holds the 49 tensors named in
`face_landmark_68_model-weights_manifest.json`, concatenated in manifest order, each quantized to uint8 with its own
affine map (value = q * scale + min, as tfjs's `io.decodeWeights` reads it). They are dequantized in float64 and
stored as float32, which is what tfjs holds in memory, so the port computes with exactly face-api's weights. Arrays keep
face-api's names and TF layouts (conv [kh, kw, in, out], depthwise [kh, kw, in, 1], pointwise [1, 1, in, out], fc
[in, out]); the model transposes them when it loads.

The npz is written byte-for-byte reproducibly (stored zip members, fixed timestamps), so the printed SHA-256 is the
one `classemo.faces.landmarks.LANDMARK_SHA256` records. The weights were trained by Vincent Mühler for face-api.js;
see classemo/faces/assets/NOTICE.md and LICENSE-face-api.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import tarfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "classemo" / "faces" / "assets" / "landmark68.npz"
MANIFEST = "package/model/face_landmark_68_model-weights_manifest.json"
PACKAGE_JSON = "package/package.json"
EXPECTED = ("@vladmandic/face-api", "1.7.15")


def read_member(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.extractfile(name)
    if member is None:
        raise SystemExit(f"{name} is not a file in the tarball")
    return member.read()


def dequantize(manifest: list[dict], blob: bytes) -> dict[str, np.ndarray]:
    """The manifest's tensors as float32, in manifest order."""
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for group in manifest:
        for spec in group["weights"]:
            quant = spec["quantization"]
            if quant["dtype"] != "uint8" or spec["dtype"] != "float32":
                raise SystemExit(f"{spec['name']}: expected uint8-quantized float32, got {quant} / {spec['dtype']}")
            count = math.prod(spec["shape"])
            q = np.frombuffer(blob, dtype=np.uint8, count=count, offset=offset)
            offset += count
            # float64 then float32, as tfjs computes q * scale + min in JS doubles into a Float32Array
            values = q.astype(np.float64) * quant["scale"] + quant["min"]
            arrays[spec["name"]] = values.astype(np.float32).reshape(spec["shape"])
    if offset != len(blob):
        raise SystemExit(f"the manifest covers {offset} bytes of the {len(blob)}-byte weight file")
    return arrays


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> bytes:
    """Write an npz that np.load reads, with fixed zip metadata (np.savez stamps the current time); returns it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w") as f:
                np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)
    data = buffer.getvalue()
    path.write_bytes(data)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tarball", type=Path, help="vladmandic-face-api-1.7.15.tgz from `npm pack`")
    parser.add_argument("--out", type=Path, default=OUT, help=f"npz to write (default {OUT.relative_to(ROOT)})")
    args = parser.parse_args()

    with tarfile.open(args.tarball, "r:gz") as tar:
        package = json.loads(read_member(tar, PACKAGE_JSON))
        if (package["name"], package["version"]) != EXPECTED:
            raise SystemExit(f"expected {'@'.join(EXPECTED)}, the tarball is {package['name']}@{package['version']}")
        manifest = json.loads(read_member(tar, MANIFEST))
        if [p for group in manifest for p in group["paths"]] != ["face_landmark_68_model.bin"]:
            raise SystemExit(f"unexpected weight shards in the manifest: {manifest}")
        blob = read_member(tar, "package/model/face_landmark_68_model.bin")
    arrays = dequantize(manifest, blob)
    data = write_npz(args.out, arrays)
    count = sum(a.size for a in arrays.values())
    print(f"{args.out}: {len(arrays)} arrays, {count:,} parameters, {len(data):,} bytes")
    print(f"tarball sha256 {hashlib.sha256(args.tarball.read_bytes()).hexdigest()}")
    print(f"npz sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
