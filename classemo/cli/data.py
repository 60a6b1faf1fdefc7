"""`classemo data info`, `classemo data synth`, `classemo data synth-classroom` and `classemo data merge`.

The commands parse options and print; the datasets and videos are made by `classemo.data` and `classemo.synth`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from classemo.data.convert import format_manifest
from classemo.synth.classroom import make_classroom_video
from classemo.synth.clips import write_synth_dataset


def info_command(root: str = typer.Argument(..., help="Dataset root (local path or s3://bucket/prefix).")) -> None:
    """Print a dataset's manifest summary: labels, counts per split and label, image size."""
    from classemo.data.format import DatasetFormatError, read_manifest

    try:
        manifest = read_manifest(root)
    except DatasetFormatError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    typer.echo(format_manifest(manifest, root))


@contextmanager
def _writing_to(out: str | Path) -> Iterator[None]:
    """A generator's bad argument is a usage error (exit 2); a place it cannot write to is exit 1."""
    try:
        yield
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    except OSError as e:  # unwritable folder, missing bucket, unreachable endpoint
        typer.echo(f"error: cannot write to {out}: {e}", err=True)
        raise typer.Exit(1) from None


def synth_command(
    out: Annotated[str, typer.Option("--out", help="Dataset root: a local folder or s3://bucket/prefix.")],
    clips_per_class: Annotated[int, typer.Option(help="Clips per label (7 labels).")] = 60,
    num_frames: Annotated[int, typer.Option(help="Frames per clip.")] = 8,
    image_size: Annotated[int, typer.Option(help="Side of the square face crops, pixels.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same bytes.")] = 0,
    subjects: Annotated[int, typer.Option(help="Distinct synthetic identities; splits are by identity.")] = 30,
    margin: Annotated[float, typer.Option(help="Draw the faces as the face path crops them at this margin (as "
                                               "`convert --margin`), so the set merges with real faces cut so.")] = 0.2,
    force: Annotated[bool, typer.Option("--force", help="Regenerate even if an identical dataset exists.")] = False,
) -> None:
    """Generate the synthetic expression-clip dataset (reused when it already exists with the same parameters)."""
    with _writing_to(out):
        manifest = write_synth_dataset(out, clips_per_class=clips_per_class, num_frames=num_frames,
                                       image_size=image_size, seed=seed, subjects=subjects, margin=margin,
                                       reuse=not force, progress=True)
    verb = "reused existing" if manifest.extra.get("reused") else "wrote"
    typer.echo(f"{verb} synthetic dataset at {out}: {manifest.num_clips} clips {manifest.counts}, "
               f"{num_frames} frames of {image_size}px, labels {[d['name'] for d in manifest.labels]}")


def synth_classroom_command(
    out: Annotated[Path, typer.Option("--out", help="Output .mp4 path; the ground truth goes beside it as .json.")],
    scenario: Annotated[str, typer.Option(help="lively, difficult or dull (the paper's Table 3).")] = "lively",
    num_students: Annotated[int, typer.Option(help="Students in the room (1..40).")] = 8,
    seconds: Annotated[float, typer.Option(help="Video length, seconds.")] = 10.0,
    fps: Annotated[float, typer.Option(help="Frame rate.")] = 10.0,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same video and truth.")] = 0,
    width: Annotated[int, typer.Option(help="Frame width, pixels.")] = 960,
    height: Annotated[int, typer.Option(help="Frame height, pixels.")] = 540,
) -> None:
    """Draw a synthetic classroom video (one teacher, N students) with a ground-truth JSON."""
    with _writing_to(out):
        truth = make_classroom_video(out, scenario=scenario, num_students=num_students, seconds=seconds, fps=fps,
                                     seed=seed, size=(width, height), progress=True)
    typer.echo(f"wrote {out} ({truth['num_frames']} frames, {len(truth['people'])} people, scenario {scenario}) "
               f"and {out.with_suffix('.json')}")


def merge_command(
    sources: Annotated[list[str], typer.Argument(help="Two or more converted datasets (local or s3://) with the same "
                                                      "labels and face settings.")],
    out: Annotated[str, typer.Option("--out", help="Root of the merged dataset (local or s3://).")],
) -> None:
    """Merge converted datasets into one: every clip keeps its split; ids get the source folder's name as prefix."""
    from classemo.data.merge import merge_datasets

    with _writing_to(out):  # a source that is missing or does not fit is a usage error (exit 2)
        manifest = merge_datasets(sources, out)
    typer.echo(format_manifest(manifest, out))
