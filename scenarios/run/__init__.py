"""The scenario runs: scenario files, the catalogue, the runner and the `run`/`list` commands."""
