"""Ray Tune searches over the training job (loss weights eta1/eta2 of the unified model)."""
