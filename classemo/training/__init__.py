"""Plain-PyTorch training steps and loops (no Ray: `jobs/` wraps them in Ray Train)."""
