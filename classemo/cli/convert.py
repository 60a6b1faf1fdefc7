"""`classemo data convert ...`: image folders, videos, AFEW-VA, FER+ and annotated classroom videos into datasets.

The commands parse options and print; each calls its converter (`classemo.data.convert_*`,
`classemo.video.convert_classroom`) with plain arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from classemo.data.convert import ConversionError, ConversionSummary
from classemo.data.convert_afew_va import convert_afew_va
from classemo.data.convert_ferplus import convert_ferplus
from classemo.data.convert_images import convert_images
from classemo.data.convert_videos import convert_videos
from classemo.data.label_map import LabelMapError, parse_label_set
from classemo.video.convert_classroom import convert_classroom

if TYPE_CHECKING:
    from classemo.data.format import Manifest

LABEL_MAP_OPTION = typer.Option(None, "--label-map", help="YAML mapping source labels onto the label set (null drops).")
LABELS_OPTION = typer.Option(None, "--labels", help="Comma-separated custom label set (default: the paper's 7).")
SPLIT_OPTION = typer.Option("0.8,0.1,0.1", "--split", help="train,val,test fractions.")
DETECTOR_OPTION = typer.Option("yunet", "--detector", help="Face detector: yunet (five landmarks, shipped in the "
                               "package), haar or haar-profile (OpenCV's cascades, boxes only).")
ALIGN_OPTION = typer.Option(True, "--align/--no-align", help="Align crops on YuNet's five landmarks (eyes level). "
                            "Haar gives no landmarks: it needs --no-align.")
YUNET_MODEL_OPTION = typer.Option(None, "--yunet-model", help="Your own YuNet ONNX file (default: the packaged one).")


def parse_fractions(text: str) -> tuple[float, float, float]:
    """The `--split` option as three numbers; the converter checks that they make fractions."""
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"--split needs three comma-separated numbers, got {text!r}") from None
    if len(parts) != 3:
        raise typer.BadParameter(f"--split needs three comma-separated numbers, got {text!r}")
    return parts  # type: ignore[return-value]


def run_conversion(fn: Callable[[], tuple["Manifest", ConversionSummary]], out: str) -> None:
    """Run a converter, print its summary, and turn bad input into a red message and exit code 2."""
    from classemo.data.format import DatasetFormatError

    try:
        _, summary = fn()
    except (ConversionError, LabelMapError, DatasetFormatError, ValueError) as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    typer.echo(summary.format())
    typer.echo(f"wrote {out} (rejected inputs listed in {out.rstrip('/')}/rejected.csv)")


def images_command(
    src: Path = typer.Argument(..., help="Image folder: labels.csv (image,label) or one sub-folder per class."),
    out: str = typer.Argument(..., help="Output dataset root (local path or s3://bucket/prefix)."),
    labels_csv: Path | None = typer.Option(None, "--labels-csv", help="Labels CSV (default: <src>/labels.csv)."),
    label_column: str | None = typer.Option(None, "--label-column", help="Label column name in the CSV."),
    pattern: str | None = typer.Option(
        None, "--pattern", help="Filename regex with (?P<subject>)(?P<sequence>)(?P<frame>) groups, e.g. "
        "'S(?P<subject>\\d+)_(?P<sequence>\\d+)_(?P<frame>\\d+)' for CK+ S005_001_00000011.png."),
    subject_pattern: str | None = typer.Option(
        None, "--subject-pattern", help="Filename regex with a (?P<subject>) group for photos named after the "
        "person, e.g. '^(?P<subject>.+)_[^_]+$' for Aaron_Peirsol_0004.jpg: one person's photos share a split."),
    label_map: Path | None = LABEL_MAP_OPTION,
    labels: str | None = LABELS_OPTION,
    image_size: int = typer.Option(112, help="Side of the square face crops."),
    margin: float = typer.Option(0.2, help="Context around the face, as a fraction of its side."),
    whole_image_fallback: bool = typer.Option(False, "--whole-image-fallback/--no-whole-image-fallback",
                                              help="Keep the whole image when no face is found (face-centred photos)."),
    min_face_fraction: float = typer.Option(0.3, help="Haar: smallest face side as a fraction of the image's "
                                            "shorter side."),
    detector: str = DETECTOR_OPTION,
    align: bool = ALIGN_OPTION,
    yunet_model: Path | None = YUNET_MODEL_OPTION,
    fps: float = typer.Option(30.0, help="Frame rate recorded for image sequences."),
    split: str = SPLIT_OPTION,
    seed: int = typer.Option(0, help="Split seed."),
    frame_format: str = typer.Option("png", help="png or jpeg."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Convert a labelled image folder (faces detected, aligned on their landmarks, cropped and resized)."""
    run_conversion(lambda: convert_images(
        src, out, labels_csv=labels_csv, label_column=label_column, pattern=pattern, subject_pattern=subject_pattern,
        label_map=label_map, labels=parse_label_set(labels), image_size=image_size, margin=margin,
        whole_image_fallback=whole_image_fallback, min_face_fraction=min_face_fraction, detector=detector,
        align=align, yunet_model=yunet_model, fps=fps,
        fractions=parse_fractions(split), seed=seed, frame_format=frame_format, progress=progress), out)


def videos_command(
    src: Path = typer.Argument(..., help="Folder of videos."),
    out: str = typer.Argument(..., help="Output dataset root (local path or s3://bucket/prefix)."),
    labels_csv: Path | None = typer.Option(None, "--labels-csv", help="CSV video,label[,subject] "
                                           "(default: <src>/labels.csv)."),
    label_column: str | None = typer.Option(None, "--label-column"),
    label_map: Path | None = LABEL_MAP_OPTION,
    labels: str | None = LABELS_OPTION,
    fps: float = typer.Option(5.0, help="Sampling rate in frames per second."),
    window: int | None = typer.Option(None, help="Frames per clip (default: one clip per video)."),
    max_frames: int = typer.Option(600, help="Cap on sampled frames per video."),
    image_size: int = typer.Option(112),
    margin: float = typer.Option(0.2),
    detector: str = DETECTOR_OPTION,
    align: bool = ALIGN_OPTION,
    yunet_model: Path | None = YUNET_MODEL_OPTION,
    split: str = SPLIT_OPTION,
    seed: int = typer.Option(0),
    frame_format: str = typer.Option("png"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Convert labelled videos into clips of the largest face track."""
    run_conversion(lambda: convert_videos(
        src, out, labels_csv=labels_csv, label_column=label_column, label_map=label_map,
        labels=parse_label_set(labels), fps=fps, window=window, max_frames=max_frames, image_size=image_size,
        margin=margin, detector=detector, align=align, yunet_model=yunet_model, fractions=parse_fractions(split),
        seed=seed, frame_format=frame_format, progress=progress), out)


def afew_va_command(
    src: Path = typer.Argument(..., help="Folder with one sub-folder of frames + JSON per clip."),
    out: str = typer.Argument(..., help="Output dataset root (local path or s3://bucket/prefix)."),
    labels_csv: Path | None = typer.Option(None, "--labels-csv", help="Optional clip,label CSV; without it the "
                                           "label nearest the clip's mean V/A is used."),
    label_column: str | None = typer.Option(None, "--label-column"),
    label_map: Path | None = LABEL_MAP_OPTION,
    labels: str | None = LABELS_OPTION,
    va_scale: float = typer.Option(10.0, help="The JSON's V/A range is [-va_scale, va_scale]."),
    fps: float = typer.Option(25.0, help="Frame rate of the frame folders."),
    image_size: int = typer.Option(112),
    margin: float = typer.Option(0.2),
    detector: str = DETECTOR_OPTION,
    align: bool = ALIGN_OPTION,
    yunet_model: Path | None = YUNET_MODEL_OPTION,
    split: str = SPLIT_OPTION,
    seed: int = typer.Option(0),
    frame_format: str = typer.Option("png"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Convert AFEW-VA-shaped data (per-frame valence/arousal)."""
    run_conversion(lambda: convert_afew_va(
        src, out, labels_csv=labels_csv, label_column=label_column, label_map=label_map,
        labels=parse_label_set(labels), va_scale=va_scale, fps=fps, image_size=image_size, margin=margin,
        detector=detector, align=align, yunet_model=yunet_model,
        fractions=parse_fractions(split), seed=seed, frame_format=frame_format, progress=progress), out)


def classroom_command(
    src: Path = typer.Argument(..., help="Folder of videos, each with an annotation JSON of the same name."),
    out: str = typer.Argument(..., help="Output dataset root (local path or s3://bucket/prefix)."),
    fps: float = typer.Option(5.0, help="Sampling rate, as `classemo analyze --fps`."),
    window: int = typer.Option(4, help="Frames per clip: the model's num_frames."),
    stride: int = typer.Option(2, help="Detections between window starts."),
    image_size: int = typer.Option(48, help="Side of the stored face crops."),
    margin: float = typer.Option(0.2, help="Context around the face, as a fraction of its side."),
    detector: str = DETECTOR_OPTION,
    align: bool = ALIGN_OPTION,
    yunet_model: Path | None = YUNET_MODEL_OPTION,
    min_iou: float = typer.Option(0.3, help="Overlap a detection needs with an annotated box."),
    split: str = SPLIT_OPTION,
    seed: int = typer.Option(0, help="Split seed."),
    frame_format: str = typer.Option("png", help="png or jpeg."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Convert annotated classroom videos into face clips cut by the analysis pipeline's own detector."""
    run_conversion(lambda: convert_classroom(
        src, out, fps=fps, window=window, stride=stride, image_size=image_size, margin=margin, min_iou=min_iou,
        detector=detector, align=align, yunet_model=yunet_model,
        fractions=parse_fractions(split), seed=seed, frame_format=frame_format, progress=progress), out)


def ferplus_command(
    src: Path = typer.Argument(..., help="Folder holding FER2013Train, FER2013Valid and FER2013Test (FERPlus layout)."),
    out: str = typer.Option("data/ferplus", "--out", help="Output dataset root (local path or s3://bucket/prefix)."),
    label_rule: str = typer.Option("majority", "--label-rule", help="majority (over half of the ten votes) or "
                                   "plurality (the most votes, no tie)."),
    label_map: Path | None = typer.Option(None, "--label-map", help="YAML over the vote classes (neutral, happiness, "
                                          "surprise, ..., contempt, unknown, NF), merged over the default map."),
    labels: str | None = LABELS_OPTION,
    limit: int | None = typer.Option(None, "--limit", help="First N rows of each split only."),
    image_size: int = typer.Option(112, help="Side of the square face crops."),
    margin: float = typer.Option(0.2, help="Context around the face, as a fraction of its side."),
    detector: str = DETECTOR_OPTION,
    align: bool = ALIGN_OPTION,
    yunet_model: Path | None = YUNET_MODEL_OPTION,
    frame_format: str = typer.Option("png", help="png or jpeg."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Convert FER+ (48x48 faces, ten votes each): hard and soft labels, FER+ splits, pixel duplicates dropped."""
    run_conversion(lambda: convert_ferplus(
        src, out, label_rule=label_rule, label_map=label_map, labels=parse_label_set(labels), limit=limit,
        image_size=image_size, margin=margin, detector=detector, align=align, yunet_model=yunet_model,
        frame_format=frame_format, progress=progress), out)
