"""Classroom video analysis: decoding, face detection, tracking, per-person windows and the `analyze` command.

Heavy modules (torch, pandas, matplotlib) load inside the functions, so importing this package for the CLI is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def analyze_command(
    video: Annotated[Path, typer.Argument(help="Video file (or a still image, analysed as one frame).")],
    model: Annotated[str, typer.Option(help="Checkpoint dir, models:/classemo@champion, models:/classemo/3 or "
                                            "runs:/<id>/model.")],
    out: Annotated[Path, typer.Option(help="Output folder for timeline.parquet, summary.json, report.html.")],
    fps: Annotated[float, typer.Option(help="Analysis frames per second.")] = 5.0,
    window: Annotated[int | None, typer.Option(help="Frames per window (default: the model's num_frames).")] = None,
    stride: Annotated[int | None, typer.Option(help="Frames between windows (default: half a window).")] = None,
    segment_s: Annotated[float, typer.Option("--segment-s", help="Segment length in seconds.")] = 60.0,
    teacher: Annotated[str, typer.Option(help="auto, none, a track id, or region:x0,y0,x1,y1 (frame fractions).")
                       ] = "auto",
    detector: Annotated[str, typer.Option(help="haar or haar-profile (ignored with --yunet-model).")] = "haar",
    yunet_model: Annotated[Path | None, typer.Option(help="YuNet ONNX file: use OpenCV's YuNet detector.")] = None,
    save_crops: Annotated[bool, typer.Option("--save-crops", help="Store face crops (off: privacy).")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Analyse a classroom video: per-person emotion timeline, Table 3/4 metrics and an HTML report."""
    from classemo.checkpoint import CheckpointError
    from classemo.predictor import Predictor
    from classemo.video.decode import VideoError
    from classemo.video.detect import make_detector
    from classemo.video.pipeline import analyze_video

    try:
        det = make_detector("yunet", model_path=yunet_model) if yunet_model else make_detector(detector)
        predictor = Predictor.from_checkpoint(model)
        res = analyze_video(video, predictor, out_dir=out, fps=fps, window=window, stride=stride,
                            segment_s=segment_s, teacher=teacher, save_crops=save_crops, progress=progress,
                            detector=det)
    except (VideoError, CheckpointError, ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if res.summary["no_faces"]:
        typer.echo(f"no faces found in {video}; wrote an empty report")
    else:
        o = res.summary["overall"]
        ca = "n/a" if o["classroom_activity"] is None else f"{o['classroom_activity']:.2f}"
        typer.echo(f"{len(res.tracks)} person(s) tracked, {len(res.dropped)} short track(s) dropped; "
                   f"classroom activity {ca}; teaching effectiveness {o['rating'] or 'n/a'}")
    typer.echo(f"wrote {res.timeline_path}, {res.summary_path}, {res.report_path}")
