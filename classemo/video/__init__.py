"""Classroom video analysis: decoding, face detection, tracking, per-person windows (`classemo analyze` drives it).

Import the submodules directly; this package imports nothing so that `import classemo.video.x` stays cheap.
"""
