"""Ray entry points: the training job (`jobs/train.py`) and its Ray Data / Ray Train pieces."""
