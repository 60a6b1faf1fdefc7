"""Model behaviour: classemo_tiny, trained with the unified loss, overfits a small synthetic batch."""

from __future__ import annotations

import numpy as np
import torch

from classemo.data.transforms import frames_to_tensor, pad_clips
from classemo.labels import LabelSet
from classemo.losses import UnifiedLoss
from classemo.models import create_model

LABELS = LabelSet(("happy", "sad", "anger", "neutral"))
NUM_CLIPS, NUM_FRAMES, IMAGE_SIZE = 32, 4, 32
MAX_STEPS = 80  # the fixed step budget; the run below reaches 100% well before it


def _synthetic_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """32 clips of random-but-fixed textures tinted with their class colour, 1 to 4 frames each."""
    rng = np.random.default_rng(seed)
    colours = np.array([(230, 180, 40), (40, 80, 220), (220, 40, 40), (130, 130, 130)], np.float32)
    labels = np.arange(NUM_CLIPS) % len(LABELS)
    clips = []
    for label in labels:
        length = int(rng.integers(1, NUM_FRAMES + 1))
        texture = rng.uniform(0, 255, size=(IMAGE_SIZE, IMAGE_SIZE, 3))
        frames = []
        for _ in range(length):
            noisy = 0.5 * colours[label] + 0.5 * texture + rng.normal(0, 12, size=texture.shape)
            frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
        clips.append(frames_to_tensor(frames, image_size=IMAGE_SIZE))
    x, mask = pad_clips(clips, NUM_FRAMES)
    va = torch.tensor([LABELS.default_va[LABELS.names[i]] for i in labels], dtype=torch.float32)
    return x, mask, torch.from_numpy(labels).long(), va


def test_classemo_tiny_overfits_a_small_batch() -> None:
    torch.manual_seed(0)
    x, mask, label, va = _synthetic_batch()
    model = create_model("classemo_tiny", num_classes=len(LABELS), image_size=IMAGE_SIZE, num_frames=NUM_FRAMES)
    loss_fn = UnifiedLoss(eta1=0.5, eta2=0.5, lambda_t=1.0, lambda_va=0.5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    targets = {"label": label, "va": va, "mask": mask}
    peak = x[:, 0]  # first frame of each clip stands in for the real peak frame (M_H)

    history, accuracy = [], 0.0
    for step in range(MAX_STEPS):
        model.train()
        losses = loss_fn(model(x, mask), targets, peak_logits=model.forward_peak(peak), peak_targets=label)
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
        history.append(losses["total"].item())
        if step % 5 == 4:
            model.eval()
            with torch.no_grad():
                accuracy = float((model(x, mask)["logits"].argmax(-1) == label).float().mean())
            if accuracy >= 0.95:
                break
    assert accuracy >= 0.95, f"training accuracy {accuracy:.2f} after {MAX_STEPS} steps; losses {history[::5]}"
    assert history[-1] < 0.5 * history[0]
