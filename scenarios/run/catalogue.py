"""The built-in scenario catalogue (`catalogue.toml`, data) and lookup by name."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from scenarios.run.scenario import Scenario, ScenarioError, load_scenarios, scenarios_from_data

CATALOGUE_FILE = "catalogue.toml"


def load_catalogue(path: Path | None = None) -> list[Scenario]:
    """Every scenario in the catalogue (or in `path`), with its default target environment."""
    if path is not None:
        return load_scenarios(path)
    text = resources.files("scenarios.run").joinpath(CATALOGUE_FILE).read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{CATALOGUE_FILE}: not valid TOML: {exc}") from exc
    return scenarios_from_data(data, CATALOGUE_FILE)


def select(catalogue: list[Scenario], names: list[str]) -> list[Scenario]:
    """The named scenarios, in the order given; an unknown name is an error listing the known."""
    by_name = {s.name: s for s in catalogue}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ScenarioError(
            f"unknown scenario(s) {', '.join(unknown)} (known: {', '.join(by_name)})"
        )
    return [by_name[n] for n in names]
