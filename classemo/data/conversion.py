"""The run every dataset converter goes through: the options they share, and the one loop that writes their clips.

A converter (`convert_images`, `convert_videos`, `convert_afew_va`, `convert_ferplus`,
`classemo.video.convert_classroom`) opens a `Conversion`, plans its clips (rejecting what cannot be planned), and
hands them to `Conversion.convert`: decode a clip, find its face track, crop, encode, emit its rows. Where one input
is not one face track (a classroom video holds many people, streamed frame by frame), the converter gives
`Conversion.write` its own rows per input instead. Either way the rows pass under one progress bar into the dataset,
and every run ends in the same bookkeeping: rejected.csv, the manifest with the summary, `inputs = converted +
rejected`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from classemo.data.convert import (CONVERTER_VERSION, DEFAULT_FRACTIONS, ConversionError, ConversionSummary,
                                   PlannedClip, Rejects, converter_face_path, derived_va, encode_frame, face_track,
                                   split_clips)
from classemo.labels import LabelSet

if TYPE_CHECKING:
    import numpy as np

    from classemo.data.format import Manifest
    from classemo.faces import FaceBox, FacePath

Unit = TypeVar("Unit")


class ConvertOptions(TypedDict, total=False):
    """The keyword options every converter takes; a converter's own docstring lists only the options it adds.

    Attributes:
        labels: Target label set (default: the paper's seven).
        image_size: Side of the square face crops (default 112; the classroom converter's is 48).
        margin: Context around the face, as a fraction of its side (default 0.2).
        frame_format: png (lossless, the default) or jpeg.
        detector: yunet (default: five landmarks, aligned crops), haar or haar-profile (OpenCV's frontal and profile
            cascades, tuned for face-centred photos; unaligned crops).
        align: Align YuNet crops on the five landmarks, eyes level (default True; ignored for Haar).
        yunet_model: A YuNet ONNX file of your own (default: the packaged one).
        faces: A ready `FacePath` to use instead of the three options above.
        source: Source name for the manifest (default: the input folder's name).
        progress: Show a progress bar (default True).
    """

    labels: LabelSet | None
    image_size: int
    margin: float
    frame_format: str
    detector: str
    align: bool
    yunet_model: str | os.PathLike | None
    faces: FacePath | None
    source: str | None
    progress: bool


class SplitOptions(ConvertOptions, total=False):
    """`ConvertOptions` plus the split, for the converters that draw one (FER+ keeps its published splits).

    Attributes:
        fractions: train/val/test fractions (default 0.8, 0.1, 0.1); a subject (else a clip) lands in one split.
        seed: Split seed (default 0).
    """

    fractions: Sequence[float]
    seed: int


class LabelledOptions(SplitOptions, total=False):
    """`SplitOptions` plus where the labels come from: the image, video and AFEW-VA converters.

    Attributes:
        labels_csv: CSV with a key column (image, video or clip) and a label column.
        label_column: Label column name (default: label, emotion, expression or class).
        label_map: YAML path or dict mapping source labels onto `labels` (null drops a label).
    """

    labels_csv: str | os.PathLike | None
    label_column: str | None
    label_map: str | os.PathLike | dict | None


DEFAULTS: LabelledOptions = {
    "labels": None, "image_size": 112, "margin": 0.2, "frame_format": "png", "detector": "yunet", "align": True,
    "yunet_model": None, "faces": None, "source": None, "progress": True, "fractions": DEFAULT_FRACTIONS, "seed": 0,
    "labels_csv": None, "label_column": None, "label_map": None,
}


class Conversion:
    """One converter run: its options, summary and rejections, its face path, and the loop that writes its rows.

    Args:
        kind: The converter's name in the summary and manifest (images, videos, afew-va, ferplus, classroom).
        unit: What one input is: image, video or clip.
        src: The input folder.
        out: Output dataset root (local path or s3://bucket/prefix).
        options: The converter's `**options`, over `DEFAULTS` and `defaults`.
        accepts: The options the converter takes; any other is a TypeError, as an unknown keyword would be.
        what: What the input folder is, for the error when it is missing (None: the converter checks it).
        defaults: This converter's own defaults of shared options (the classroom's image_size).

    Raises:
        ConversionError: the input folder is missing.
    """

    def __init__(self, kind: str, unit: str, src: str | os.PathLike, out: str, options: ConvertOptions, *,
                 accepts: type = LabelledOptions, what: str | None = None, **defaults: Any) -> None:
        unknown = sorted(set(options) - set(accepts.__annotations__))
        if unknown:
            raise TypeError(f"convert_{kind.replace('-', '_')}() got an unexpected keyword argument {unknown[0]!r}")
        self.src = Path(src)
        if what is not None and not self.src.is_dir():
            raise ConversionError(f"{what} {self.src} not found")
        self.out = out
        self.options: dict[str, Any] = {**DEFAULTS, **defaults, **options}
        self.labels: LabelSet = self.options["labels"] or LabelSet.paper()
        self.source: str = self.options["source"] or self.src.name
        self.summary = ConversionSummary(kind=kind, unit=unit)
        self.rejects = Rejects(self.summary)
        self._faces: FacePath | None = self.options["faces"]

    def face_path(self, *, tuned_haar: bool = True, **haar_kwargs: Any) -> "FacePath":
        """The `faces` option, else the face path built from the options on the first call (`converter_face_path`;
        a converter calls it where a bad detector setting should stop the run)."""
        if self._faces is None:
            o = self.options
            self._faces = converter_face_path(o["detector"], o["align"], o["margin"], o["image_size"],
                                              o["yunet_model"], tuned_haar=tuned_haar, **haar_kwargs)
        return self._faces

    def split(self, planned: list[PlannedClip]) -> str:
        """Assign the planned clips' splits by the fractions and seed; returns (and records) what they split by."""
        self.summary.split_by = split_clips(planned, self.options["fractions"], self.options["seed"])
        return self.summary.split_by

    @property
    def split_record(self) -> dict[str, Any]:
        """What the manifest records of the split and the input."""
        return {"split_seed": self.options["seed"], "split_fractions": list(self.options["fractions"]),
                "input": str(self.src)}

    def row(self, clip: PlannedClip, frames: list[bytes], *, fps: float, peak_index: int, **fields: Any) -> dict:
        """An output row of `clip`: its id, subject, split and label, the V/A derived from the label, unless `fields`
        give others (a window's id and label, annotated V/A, a soft label)."""
        row = {"clip_id": clip.clip_id, "subject_id": clip.subject_id, "source": self.source, "split": clip.split,
               "frames": frames, "fps": fps, "peak_index": peak_index, "label": clip.label, **fields}
        row["label_idx"] = self.labels.index(row["label"])
        return row if "va_source" in row else {**row, **derived_va(row["label"], self.labels)}

    def convert(
        self, planned: Sequence[PlannedClip], *, load: Callable[[PlannedClip], "list[np.ndarray] | None"],
        emit: Callable[[PlannedClip, list[bytes]], Iterator[dict]], no_face: Callable[[PlannedClip, int], None],
        desc: str, extra: dict[str, Any],
        track: "Callable[[PlannedClip, list[np.ndarray]], list[FaceBox] | None] | None" = None,
        whole_image_fallback: bool = False, per_frame: bool = False,
        fallback_box: "Callable[[np.ndarray], FaceBox] | None" = None,
    ) -> "Manifest":
        """Decode each planned clip, find its face track, crop, encode and write its rows.

        Every converter cuts faces the same way here (`FacePath.crop`, the crop `analyze` and Serve make).

        Args:
            load: A clip's decoded BGR frames; it rejects what it cannot read itself and returns None (or nothing)
                when no frame is left.
            emit: The output rows of a clip from its encoded crops (one row, or one per window).
            no_face: Rejects a clip (given its number of frames) in which no face was found.
            desc: The progress bar's label.
            extra: What the manifest records of the conversion's settings.
            track: A clip's boxes, one per frame, or None for no face (default: `face_track` with the face path).
            whole_image_fallback: Crop the whole image when no face is found (face-centred inputs), counted apart.
            per_frame: Count converted/face_found/fallback per frame (image inputs) rather than per clip.
            fallback_box: The box that fallback crops (default: the whole image; FER+ leaves out its padding).
        """
        from classemo.faces import crop_face, whole_image_box

        faces, summary = self.face_path(), self.summary
        image_size, frame_format = self.options["image_size"], self.options["frame_format"]

        def rows(clip: PlannedClip) -> Iterator[dict]:
            images = load(clip)
            if not images:
                return
            boxes = track(clip, images) if track is not None else face_track(images, faces)
            fallback = boxes is None
            if fallback and not whole_image_fallback:
                no_face(clip, len(images))
                return
            n = len(images) if per_frame else 1
            if fallback:
                boxes = [(fallback_box or whole_image_box)(im) for im in images]
                summary.whole_image_fallback += n
            else:
                summary.face_found += n
            summary.converted += n
            crops = ([crop_face(im, box, margin=0.0, size=image_size) for im, box in zip(images, boxes)] if fallback
                     else [faces.crop(im, box)[0] for im, box in zip(images, boxes)])
            yield from emit(clip, [encode_frame(c, frame_format) for c in crops])

        return self.write(planned, rows, desc=desc, extra=extra)

    def write(self, units: Sequence[Unit], rows: Callable[[Unit], Iterator[dict]], *, desc: str,
              extra: dict[str, Any]) -> "Manifest":
        """The loop itself: each input's rows, under one progress bar, into the dataset; then rejected.csv, and the
        manifest rewritten with the summary (write_dataset consumes rows lazily, so the counts are complete only
        after it returns; the rewrite is one small JSON).

        Raises:
            AssertionError: when `inputs != converted + rejected`, a converter's bug.
        """
        from tqdm.auto import tqdm

        from classemo.data.format import MANIFEST_NAME, open_filesystem, write_dataset

        summary = self.summary

        def counted() -> Iterator[dict]:
            for unit in tqdm(units, desc=desc, unit="clip", disable=not self.options["progress"]):
                for row in rows(unit):
                    summary.clips[row["split"]] += 1
                    summary.frames += len(row["frames"])
                    yield row

        manifest = write_dataset(counted(), self.out, self.labels, image_size=self.options["image_size"],
                                 source=self.source, converter_version=f"{summary.kind}/{CONVERTER_VERSION}",
                                 extra=extra, face=self.face_path().settings.to_dict())
        self.rejects.write(self.out)
        manifest.extra["conversion"] = summary.to_dict()
        fs, base = open_filesystem(self.out)
        with fs.open_output_stream(f"{base.rstrip('/')}/{MANIFEST_NAME}") as f:
            f.write(manifest.to_json().encode())
        if summary.inputs != summary.converted + summary.rejected:
            raise AssertionError(f"converter bookkeeping is off: {summary.format()}")
        return manifest
