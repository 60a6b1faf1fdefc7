"""Frame-sequence datasets: the Parquet format (`format`), face detection (`faces`), converters (`convert`),
the synthetic generator (`synth`) and the shared preprocessing (`transforms`).

Import the submodules directly; this package imports nothing so that `import classemo.data.x` stays cheap.
"""
