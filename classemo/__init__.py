"""classemo: facial emotions of students and teachers over time in classroom video, as classroom analytics.

Implements "Emotion recognition in learning scenes supported by smart classrooms" (ViT + NetVLAD spatial
features, residual attention, non-local blocks, a temporal Transformer, StarGAN peak-frame augmentation).
The library is plain PyTorch/NumPy/OpenCV/pyarrow and never imports Ray.
"""

__version__ = "0.1.0"
