"""Benchmarks: each module has main(json_output: bool) -> int."""
