"""Ray Tune searches over the training job (loss weights eta1/eta2 of the unified model).

`config` says what to search, `search` runs (or resumes) it, `report` records the results; `tune_loss_weights.py` is
the command.
"""
