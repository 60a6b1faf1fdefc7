"""Ray Serve application of classemo (see serve/app.py and docs/serving.md)."""
