"""Deliberately weakened builds of the reference service, runnable as target commands.

Each module is `python -m scenarios.variants.<name>`: the reference service, built from the
same code and the same environment, with one resilience mechanism taken away, so the
harness can show the difference (a check that cannot fail a broken variant is a defect).
"""
