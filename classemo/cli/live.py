"""`classemo live SOURCE`: a camera or stream analysed as it comes, the teacher's page on 127.0.0.1, a report at the
end. The work is `classemo.live.session.run_live`; this command wires the source, the page and Ctrl-C."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer


def live_command(
    source: Annotated[str, typer.Argument(help="Camera index (0), stream URL (rtsp://, http(s):// MJPEG, anything "
                                               "FFmpeg reads) or a video file (played at its own speed).")],
    out: Annotated[Path, typer.Option(help="Folder for the lesson's timeline.parquet, summary.json and report.html, "
                                           "written when it ends.")],
    model: Annotated[str, typer.Option(help="builtin, a checkpoint dir or an MLflow models:/ URI.")] = "builtin",
    fps: Annotated[float, typer.Option(help="Analysis frames per second.")] = 5.0,
    seconds: Annotated[float | None, typer.Option(help="Stop after this many seconds of stream (default: until "
                                                       "the stream ends or Ctrl-C).")] = None,
    host: Annotated[str, typer.Option(help="Address of the page; anything but 127.0.0.1 needs CLASSEMO_API_KEYS.")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the page (0: any free one).")] = 8765,
    realtime: Annotated[bool, typer.Option("--realtime/--as-fast-as-possible",
                                           help="Play a file at its own speed, dropping what the analysis cannot "
                                                "keep up with (as a camera would); or read it whole.")] = True,
    teacher: Annotated[str, typer.Option(help="auto, none, a track id, or region:x0,y0,x1,y1.")] = "auto",
    title: Annotated[str, typer.Option(help="The classroom's name on the page.")] = "classemo live",
    save_crops: Annotated[bool, typer.Option("--save-crops", help="Store face crops (off: privacy).")] = False,
    show_faces: Annotated[bool, typer.Option("--show-faces", help="Show each person's newest face on their tile "
                                                                  "(off: the page shows no face; none is kept).")
                          ] = False,
) -> None:
    """Analyse a live lesson: each person's state on the teacher's page every second, the report at the end."""
    from classemo.apikeys import load_key_digests
    from classemo.checkpoint import CheckpointError
    from classemo.live.page import LivePage
    from classemo.live.session import run_live
    from classemo.live.source import LiveSource, SourceError
    from classemo.predictor import Predictor
    from classemo.report import headline

    try:
        predictor = Predictor.from_checkpoint(model)
        stream = LiveSource(source, fps=fps, realtime=realtime, max_seconds=seconds)
        page = LivePage(host, port, key_digests=load_key_digests(), title=title)
    except (SourceError, CheckpointError, ValueError, OSError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"live page: {page.url}  (Ctrl-C ends the lesson and writes the report)", err=True)
    signal.signal(signal.SIGINT, lambda *_: stream.stop())  # finish the frames in hand, then write the report
    try:
        res = run_live(stream, predictor, out_dir=out, on_state=page.publish, teacher=teacher, save_crops=save_crops,
                       show_faces=show_faces)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        page.close()
    live = res.summary["live"]
    if not res.summary["no_faces"]:
        typer.echo(headline(res.summary))
    typer.echo(f"{len(res.tracks)} person(s) tracked; {live['analysed_frames']} frames analysed, "
               f"{live['dropped_frames']} dropped, {len(live['gaps'])} gap(s)"
               + (f"; {live['error']}" if live["error"] else ""))
    typer.echo(f"wrote {res.timeline_path}, {res.summary_path}, {res.report_path}")
