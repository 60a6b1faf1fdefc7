"""`classemo analyze`: a classroom video through the face path, the model and the analytics, into a report.

The work is `classemo.video.pipeline.analyze_video`; this command turns its options into face settings and prints.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer


def analyze_command(
    video: Annotated[Path, typer.Argument(help="Video file (or a still image, analysed as one frame).")],
    out: Annotated[Path, typer.Option(help="Output folder for timeline.parquet, summary.json, report.html.")],
    model: Annotated[str, typer.Option(help="builtin (the model shipped with classemo), a checkpoint dir, "
                                            "models:/classemo@champion, models:/classemo/3 or runs:/<id>/model.")
                     ] = "builtin",
    fps: Annotated[float, typer.Option(help="Analysis frames per second.")] = 5.0,
    window: Annotated[int | None, typer.Option(help="Frames per window (default: the model's num_frames).")] = None,
    stride: Annotated[int | None, typer.Option(help="Frames between windows (default: half a window).")] = None,
    segment_s: Annotated[float, typer.Option("--segment-s", help="Segment length in seconds.")] = 60.0,
    teacher: Annotated[str, typer.Option(help="auto, none, a track id, or region:x0,y0,x1,y1 (frame fractions).")
                       ] = "auto",
    detector: Annotated[str | None, typer.Option(help="yunet, haar or haar-profile (default: the model's own face "
                                                      "settings, as in its training data).")] = None,
    yunet_model: Annotated[Path | None, typer.Option(help="Your own YuNet ONNX file (default: the packaged one).")
                           ] = None,
    detect_max_side: Annotated[int | None, typer.Option(help="YuNet: longest side frames are shrunk to for "
                                                             "detection (default 640; raise it for tiny faces).")
                               ] = None,
    save_crops: Annotated[bool, typer.Option("--save-crops", help="Store face crops (off: privacy).")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Analyse a classroom video: per-person emotion timeline, Table 3/4 metrics and an HTML report."""
    from classemo.checkpoint import CheckpointError
    from classemo.predictor import Predictor
    from classemo.video.decode import VideoError
    from classemo.video.pipeline import analyze_video
    from classemo.report import headline

    try:
        predictor = Predictor.from_checkpoint(model)
        face = predictor.face_settings
        if detector is not None:
            face = replace(face, detector=detector, align=face.align and detector == "yunet")
        if yunet_model is not None or detect_max_side is not None:
            face = replace(face, model_path=str(yunet_model) if yunet_model else face.model_path,
                           max_side=face.max_side if detect_max_side is None else detect_max_side)
        res = analyze_video(video, predictor, out_dir=out, fps=fps, window=window, stride=stride,
                            segment_s=segment_s, teacher=teacher, save_crops=save_crops, progress=progress,
                            faces=face)
    except (VideoError, CheckpointError, ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if res.summary["no_faces"]:
        typer.echo(f"no faces found in {video}; wrote an empty report")
    else:
        o = res.summary["overall"]
        ca = "n/a" if o["classroom_activity"] is None else f"{o['classroom_activity']:.2f}"
        typer.echo(headline(res.summary))
        typer.echo(f"{len(res.tracks)} person(s) tracked, {len(res.dropped)} short track(s) dropped; "
                   f"classroom activity {ca}; teaching effectiveness {o['rating'] or 'n/a'}")
    typer.echo(f"wrote {res.timeline_path}, {res.summary_path}, {res.report_path}")
