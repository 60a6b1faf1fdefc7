"""`classemo ...`: data conversion and synthesis, evaluation and classroom video analysis.

This package holds every command; each parses its options, calls a plain function of the library and prints. This
file only assembles the command tree. Heavy modules (torch, MLflow) load inside the commands, so `--help` is quick.
"""

from __future__ import annotations

import typer

from classemo.cli.analyze import analyze_command
from classemo.cli.convert import (afew_va_command, classroom_command, ferplus_command, images_command,
                                  videos_command)
from classemo.cli.data import info_command, merge_command, synth_classroom_command, synth_command
from classemo.cli.evaluate import evaluate_command
from classemo.cli.live import live_command

app = typer.Typer(help="classemo: classroom facial-emotion analytics.", no_args_is_help=True, add_completion=False)
data_app = typer.Typer(help="Create, convert and inspect frame-sequence datasets.", no_args_is_help=True)
convert_app = typer.Typer(help="Convert image folders, videos, AFEW-VA data or annotated classroom videos.",
                          no_args_is_help=True)


@app.command()
def version() -> None:
    """Print the classemo version."""
    from classemo import __version__

    typer.echo(__version__)


app.command("analyze")(analyze_command)
app.command("evaluate")(evaluate_command)
app.command("live")(live_command)
app.add_typer(data_app, name="data")
convert_app.command("images")(images_command)
convert_app.command("videos")(videos_command)
convert_app.command("afew-va")(afew_va_command)
convert_app.command("classroom")(classroom_command)
convert_app.command("ferplus")(ferplus_command)
data_app.command("info")(info_command)
data_app.command("synth")(synth_command)
data_app.command("synth-classroom")(synth_classroom_command)
data_app.command("merge")(merge_command)
data_app.add_typer(convert_app, name="convert")
