"""Faces: detection (YuNet by default, Haar selectable), five-landmark alignment and crops: the one face path.

Lower than both `classemo.data` and `classemo.video`, which use it; it imports neither.
"""

from classemo.faces.box import FaceBox, largest_face, whole_image_box
from classemo.faces.crop import align_face, crop_face, eye_angle
from classemo.faces.detectors import (DETECTOR_NAMES, FaceDetector, HaarDetector, YuNetDetector, make_detector,
                                      packaged_yunet_path)
from classemo.faces.path import (Face, FaceInputError, FacePath, FaceSettings, as_bgr, legacy_settings,
                                 warn_if_different)

__all__ = ["DETECTOR_NAMES", "Face", "FaceBox", "FaceDetector", "FaceInputError", "FacePath", "FaceSettings",
           "HaarDetector", "YuNetDetector", "align_face", "as_bgr", "crop_face", "eye_angle", "largest_face",
           "legacy_settings", "make_detector", "packaged_yunet_path", "warn_if_different", "whole_image_box"]
