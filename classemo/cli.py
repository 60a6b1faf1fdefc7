"""`classemo ...`: data conversion and synthesis, evaluation and classroom video analysis.

Each command's body lives beside the code it drives; this file only assembles the command tree.
"""

from __future__ import annotations

import typer

from classemo.data.convert import convert_app, info_cmd
from classemo.data.convert_afew_va import convert_afew_va_cmd
from classemo.data.convert_classroom import convert_classroom_cmd
from classemo.data.convert_images import convert_images_cmd
from classemo.data.convert_videos import convert_videos_cmd
from classemo.data.synth import synth_command
from classemo.data.synth_classroom import synth_classroom_command
from classemo.evaluate import evaluate_command
from classemo.video import analyze_command

app = typer.Typer(help="classemo: classroom facial-emotion analytics.", no_args_is_help=True, add_completion=False)
data_app = typer.Typer(help="Create, convert and inspect frame-sequence datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@app.command()
def version() -> None:
    """Print the classemo version."""
    from classemo import __version__

    typer.echo(__version__)


# Each command's function carries its own typer options; heavy imports stay inside the functions.
app.command("analyze")(analyze_command)
app.command("evaluate")(evaluate_command)
convert_app.command("images")(convert_images_cmd)
convert_app.command("videos")(convert_videos_cmd)
convert_app.command("afew-va")(convert_afew_va_cmd)
convert_app.command("classroom")(convert_classroom_cmd)
data_app.add_typer(convert_app, name="convert")
data_app.command("info")(info_cmd)
data_app.command("synth")(synth_command)
data_app.command("synth-classroom")(synth_classroom_command)


if __name__ == "__main__":
    app()
