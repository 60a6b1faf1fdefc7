"""Synthetic data with known truth, drawn with OpenCV: faces (`face`, `draw`, `render`), expression clips and their
dataset (`clips`), and classroom videos (`classroom`). See docs/synthetic-data.md.

Import the submodules directly; this package imports nothing so that `import classemo.synth.x` stays cheap.
"""
