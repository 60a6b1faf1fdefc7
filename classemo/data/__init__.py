"""Frame-sequence datasets: the Parquet format (`format`), opening a dataset root (`dataset`), converters
(`convert*`), the training batch decoders (`batches`), peak-frame choice (`peak`) and the shared image preprocessing
(`transforms`). Faces live in `classemo.faces`, the synthetic generators in `classemo.synth`.

Import the submodules directly; this package imports nothing so that `import classemo.data.x` stays cheap.
"""
