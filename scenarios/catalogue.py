"""The built-in scenario catalogue (`catalogue.toml`, data) and lookup by name."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from importlib import resources
from pathlib import Path

from scenarios.scenario import Scenario, ScenarioError, parse_scenario

CATALOGUE_FILE = "catalogue.toml"


def load_catalogue(path: Path | None = None) -> list[Scenario]:
    """Every scenario in the catalogue, with the catalogue's default target environment."""
    if path is None:
        text = resources.files("scenarios").joinpath(CATALOGUE_FILE).read_text()
        where = CATALOGUE_FILE
    else:
        text, where = path.read_text(), str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{where}: not valid TOML: {exc}") from exc
    defaults = {str(k): str(v) for k, v in data.get("defaults", {}).get("target_env", {}).items()}
    scenarios = []
    for raw in data.get("scenario", []):
        try:
            scenario = parse_scenario(raw)
        except ScenarioError as exc:
            raise ScenarioError(f"{where}: {exc}") from exc
        scenarios.append(replace(scenario, target_env={**defaults, **scenario.target_env}))
    return scenarios


def select(catalogue: list[Scenario], names: list[str]) -> list[Scenario]:
    """The named scenarios, in the order given; an unknown name is an error listing the known."""
    by_name = {s.name: s for s in catalogue}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ScenarioError(
            f"unknown scenario(s) {', '.join(unknown)} (known: {', '.join(by_name)})"
        )
    return [by_name[n] for n in names]
