"""Batch machinery: inputs, the runner that schedules videos and chunks, checkpoints, locks,
stopping, the summary, and the Dask engine."""
