"""`python -m classemo.cli ...`: the `classemo` script without the installed entry point."""

from classemo.cli import app

app()
