"""Training losses. The unified model's loss is here; StarGAN's adversarial losses live in `classemo.losses.stargan`."""

from classemo.losses.unified import (
    LOSS_KEYS,
    UnifiedLoss,
    ccc_loss,
    class_weights_from_counts,
    label_counts,
    masked_va_loss,
    unified_loss,
)

__all__ = [
    "LOSS_KEYS",
    "UnifiedLoss",
    "ccc_loss",
    "class_weights_from_counts",
    "label_counts",
    "masked_va_loss",
    "unified_loss",
]
