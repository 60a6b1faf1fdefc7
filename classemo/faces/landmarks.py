"""68-point facial landmarks: a PyTorch port of face-api's FaceLandmark68Net (face-api.js by Vincent Mühler, as
packaged in @vladmandic/face-api 1.7.15; MIT, see classemo/faces/assets/NOTICE.md).

The net reads a face crop padded with zeros to a centred square and resized to 112 px, and regresses the 68 points of
the iBUG 300-W markup as fractions of that square. Its weights ship in the package (`assets/landmark68.npz`, built by
scripts/build_landmark_weights.py); nothing is downloaded. `LandmarkReader` does face-api's preprocessing and
postprocessing around it for a frame and its detector boxes, so callers get points in frame pixels.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import io
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from classemo.faces.box import FaceBox

LANDMARK_FILE = "landmark68.npz"
LANDMARK_SHA256 = "2b2abf59165062a5cbce5343c462789f4a5f441d517c75fe3d7802a64f9fcd0b"
NUM_LANDMARKS = 68

# iBUG 300-W index groups (0-based; each is contiguous, so a slice: points[..., EYES, :]), named in the subject's
# terms like FaceBox.landmarks: the subject's right eye (36-41) is on the image's left.
JAW = slice(0, 17)
RIGHT_BROW, LEFT_BROW, BROWS = slice(17, 22), slice(22, 27), slice(17, 27)
NOSE_BRIDGE, NOSE_BASE, NOSE = slice(27, 31), slice(31, 36), slice(27, 36)
RIGHT_EYE, LEFT_EYE, EYES = slice(36, 42), slice(42, 48), slice(36, 48)
OUTER_LIPS, INNER_LIPS, MOUTH = slice(48, 60), slice(60, 68), slice(48, 68)
# The six points of the usual solvePnP head-pose model.
NOSE_TIP, CHIN = 30, 8
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 36, 45
MOUTH_RIGHT, MOUTH_LEFT = 48, 54


class SeparableConv(nn.Module):
    """face-api's depthwiseSeparableConv: 3x3 depthwise then 1x1 pointwise with bias, TF 'same' padding."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, stride=stride, padding=0 if stride == 2 else 1,
                                   groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:
            x = _pad_same_stride2(x)
        return self.pointwise(self.depthwise(x))


class DenseBlock(nn.Module):
    """face-api's denseBlock4: a stride-2 conv, then three separable convs, each fed the ReLU of the sum so far."""

    def __init__(self, in_channels: int, out_channels: int, *, first: bool = False) -> None:
        super().__init__()
        self.first = first
        # The first block reads the 3-channel image with a plain conv; the others downsample with a separable one.
        self.conv0 = (nn.Conv2d(in_channels, out_channels, 3, stride=2) if first
                      else SeparableConv(in_channels, out_channels, stride=2))
        self.conv1 = SeparableConv(out_channels, out_channels)
        self.conv2 = SeparableConv(out_channels, out_channels)
        self.conv3 = SeparableConv(out_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = F.relu(self.conv0(_pad_same_stride2(x) if self.first else x))  # (B, C, H/2, W/2)
        out2 = self.conv1(out1)
        out3 = self.conv2(F.relu(out1 + out2))
        out4 = self.conv3(F.relu(out1 + out2 + out3))
        return F.relu(out1 + out2 + out3 + out4)


def _pad_same_stride2(x: torch.Tensor) -> torch.Tensor:
    """TF's 'same' padding for a 3x3 stride-2 conv on an even size: nothing before, one row/column after (PyTorch's
    symmetric padding would shift every output by half an input pixel)."""
    return F.pad(x, (0, 1, 0, 1))


class FaceLandmark68Net(nn.Module):
    """face-api's FaceLandmark68Net: four dense blocks (32 to 256 channels), 7x7 average pool, fc to 68 (x, y).

    `forward` takes (B, 3, 112, 112) RGB already normalised as `(pixel - MEAN_RGB) / 255` and returns (B, 68, 2)
    points as fractions of that square input. Not in the emotion models' registry (`create_model`): it has one
    architecture and one set of weights, which `load_landmark_net` loads.
    """

    INPUT_SIZE = 112
    MEAN_RGB = (122.782, 117.001, 104.298)  # face-api's per-channel means; it divides by 255 after subtracting them
    CHANNELS = (32, 64, 128, 256)

    def __init__(self) -> None:
        super().__init__()
        c0, c1, c2, c3 = self.CHANNELS
        self.dense0 = DenseBlock(3, c0, first=True)
        self.dense1 = DenseBlock(c0, c1)
        self.dense2 = DenseBlock(c1, c2)
        self.dense3 = DenseBlock(c2, c3)
        self.fc = nn.Linear(c3, 2 * NUM_LANDMARKS)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 112, 112) normalised input -> (B, 256) pooled features."""
        if x.shape[-2:] != (self.INPUT_SIZE, self.INPUT_SIZE):
            raise ValueError(f"expected (B, 3, {self.INPUT_SIZE}, {self.INPUT_SIZE}) input, got {tuple(x.shape)}")
        x = self.dense3(self.dense2(self.dense1(self.dense0(x))))  # (B, 256, 7, 7)
        return x.mean(dim=(2, 3))  # face-api's avgPool 7x7 stride 2 'valid' on a 7x7 map is this global mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # face-api's fc output interleaves x0, y0, x1, y1, ...
        return rearrange(self.fc(self.forward_features(x)), "b (n xy) -> b n xy", xy=2)


def state_dict_from_tf(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """face-api's weights, by their manifest names and TF layouts, as a FaceLandmark68Net state dict."""
    layouts = {  # TF layout -> PyTorch's (out, in / groups, kh, kw)
        "filters": "kh kw i o -> o i kh kw",
        "depthwise_filter": "kh kw i one -> i one kh kw",
        "pointwise_filter": "kh kw i o -> o i kh kw",
        "weights": "i o -> o i",
    }
    targets = {"filters": "weight", "depthwise_filter": "depthwise.weight", "pointwise_filter": "pointwise.weight",
               "weights": "weight"}
    state = {}
    for name, array in arrays.items():
        *module, leaf = name.split("/")
        tensor = torch.from_numpy(np.asarray(array, dtype=np.float32))
        if leaf == "bias":
            # A separable conv's bias follows its pointwise conv; the plain conv's and the fc's are their own.
            is_separable = f"{'/'.join(module)}/pointwise_filter" in arrays
            state[".".join([*module, "pointwise.bias" if is_separable else "bias"])] = tensor
        else:
            state[".".join([*module, targets[leaf]])] = rearrange(tensor, layouts[leaf]).contiguous()
    return state


def packaged_landmark_path() -> Path:
    """The FaceLandmark68Net weights installed with the package (MIT; see classemo/faces/assets/NOTICE.md)."""
    return Path(str(resources.files("classemo.faces") / "assets" / LANDMARK_FILE))


def load_landmark_net(path: str | Path | None = None) -> FaceLandmark68Net:
    """The landmark net with face-api's weights, in eval mode; one shared instance per file and process.

    Args:
        path: the weights npz; None uses the one shipped in the package. It must be that exact file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: its SHA-256 is not the recorded one (a truncated, edited or foreign file).
    """
    return _load((Path(path) if path else packaged_landmark_path()).resolve())


@functools.lru_cache(maxsize=4)
def _load(path: Path) -> FaceLandmark68Net:
    if not path.is_file():
        raise FileNotFoundError(f"landmark weights not found: {path} (scripts/build_landmark_weights.py makes them)")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != LANDMARK_SHA256:
        raise ValueError(f"{path}: SHA-256 {digest} is not the FaceLandmark68Net weights' {LANDMARK_SHA256}; rebuild "
                         "it with scripts/build_landmark_weights.py from @vladmandic/face-api 1.7.15")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    net = FaceLandmark68Net()
    net.load_state_dict(state_dict_from_tf(arrays))
    return net.eval()


def _tf_bilinear_taps(n: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Taps of tf.image.resizeBilinear(alignCorners=false, halfPixelCenters=false) from n samples to `size`."""
    src = np.arange(size) * (n / size)  # no half-pixel offset: output sample j reads source position j * n / size
    lo = np.floor(src).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)  # TF clamps the far tap to the last sample rather than reading past it
    return lo, hi, (src - lo).astype(np.float32)


def face_input(crop_bgr: np.ndarray, size: int = FaceLandmark68Net.INPUT_SIZE) -> tuple[np.ndarray, int, int, int]:
    """face-api's input image for one face crop: padded with zeros to a centred square, resized bilinearly as tfjs
    does (toBatchTensor with padToSquare), RGB.

    Args:
        crop_bgr: (h, w, 3) BGR pixels of the face box.
        size: the side of the output.

    Returns:
        The (size, size, 3) float32 RGB image in 0-255, the square's side and the zeros added on its left and top.
    """
    h, w = crop_bgr.shape[:2]
    side = max(h, w)
    # padToSquare puts Math.round(diff / 2) zeros after the image and the rest before it
    left, top = (side - w) // 2, (side - h) // 2
    square = cv2.copyMakeBorder(cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2RGB), top, side - h - top, left,
                                side - w - left, cv2.BORDER_CONSTANT, value=0)
    lo, hi, frac = _tf_bilinear_taps(side, size)
    rows = square[lo].astype(np.float32)
    rows += (square[hi] - rows) * frac[:, None, None]  # (size, side, 3)
    image = rows[:, lo]
    image += (rows[:, hi] - image) * frac[None, :, None]  # (size, size, 3)
    return image, side, left, top


class LandmarkReader:
    """The 68 landmarks of each face box in a frame, in frame pixels, from one batched forward of FaceLandmark68Net.

    Each box is clipped to the frame and cut out as it is, then padded to a square with zeros, as face-api does with
    its own detector's boxes. A box with no area inside the frame gives a row of NaN. YuNet's boxes fit as they are:
    on 56 faces of the test media (most from the two videos), the mean distance of the 68 points' eye centres, nose
    tip and mouth corners to YuNet's own five points is 0.081 of the eye distance, 0.080-0.083 with the box scaled by
    0.9-1.1 and 0.088 at 0.8 or 1.2. Faces shrunk to 30 px wide keep their points within 2.7% of the face width of
    the full-size answer on average (4% at 20 px, 6% at 15 px); at 10 px the points are unusable.

    Args:
        net: a FaceLandmark68Net; None loads the packaged one (`load_landmark_net()`).
        device: where the net runs; the crops are made on the CPU.
    """

    def __init__(self, net: FaceLandmark68Net | None = None, *, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        net = net or load_landmark_net()
        # Another device gets a copy: the packaged net is one instance shared by every caller in the process.
        self.net = net if next(net.parameters()).device == self.device else copy.deepcopy(net).to(self.device)
        self._mean = torch.tensor(FaceLandmark68Net.MEAN_RGB, device=self.device)

    def __call__(self, frame_bgr: np.ndarray, boxes: Sequence[FaceBox]) -> np.ndarray:
        """(N, 68, 2) float32 (x, y) frame coordinates, one row per box, NaN where a box misses the frame.

        Args:
            frame_bgr: (H, W, 3) BGR frame the boxes were found in.
            boxes: face boxes in that frame's pixels.
        """
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) BGR frame, got shape {frame_bgr.shape}")
        height, width = frame_bgr.shape[:2]
        out = np.full((len(boxes), NUM_LANDMARKS, 2), np.nan, dtype=np.float32)
        images, rows, geometry = [], [], []
        for i, box in enumerate(boxes):
            x0, y0 = max(0, int(box.x)), max(0, int(box.y))
            x1, y1 = min(width, int(box.x + box.w)), min(height, int(box.y + box.h))
            if x1 <= x0 or y1 <= y0:
                continue
            image, side, left, top = face_input(frame_bgr[y0:y1, x0:x1])
            images.append(image)
            rows.append(i)
            geometry.append((side, x0 - left, y0 - top))
        if not images:
            return out
        with torch.inference_mode():
            x = (torch.from_numpy(np.stack(images)).to(self.device) - self._mean) / 255.0  # (B, 112, 112, 3)
            # A channels-last view, not a copy: the CPU convs run about 1.3x faster on it (30 faces, 1 thread).
            points = self.net(rearrange(x, "b h w c -> b c h w")).cpu().numpy()  # (B, 68, 2), 0-1
        g = np.asarray(geometry, dtype=np.float32)[:, None, :]  # (B, 1, 3): side, the square's corner in the frame
        out[rows] = points * g[..., :1] + g[..., 1:]
        return out
