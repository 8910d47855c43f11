"""The CI examples users copy (examples/ci/) are valid: actionlint and check-jsonschema's
vendored schemas (offline), and each validator rejects a broken variant."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scenarios.pytest_plugin import unavailable

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / "examples/ci/github-actions.yml"
GITLAB = ROOT / "examples/ci/gitlab-ci.yml"


def actionlint() -> str:
    """The actionlint that scripts/bootstrap --test installs into .tools/bin."""
    found = shutil.which("actionlint", path=str(ROOT / ".tools/bin")) or shutil.which("actionlint")
    if found is None:
        unavailable("actionlint is not installed (scripts/bootstrap --test installs it)")
    assert found is not None
    return found


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with a vendored schema (no download)."""
    exe = Path(sys.executable).with_name("check-jsonschema")
    return subprocess.run(
        [str(exe), "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [actionlint(), "-no-color", str(path)], capture_output=True, text=True, timeout=120
    )


def test_github_workflow_passes_actionlint() -> None:
    """examples/ci/github-actions.yml: no actionlint finding."""
    result = run_actionlint(GITHUB)
    assert result.returncode == 0, result.stdout + result.stderr


def test_github_workflow_matches_the_vendored_schema() -> None:
    """examples/ci/github-actions.yml validates against vendor.github-workflows."""
    result = check_jsonschema("vendor.github-workflows", GITHUB)
    assert result.returncode == 0, result.stdout + result.stderr


def test_gitlab_pipeline_matches_the_vendored_schema() -> None:
    """examples/ci/gitlab-ci.yml validates against vendor.gitlab-ci."""
    result = check_jsonschema("vendor.gitlab-ci", GITLAB)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validators_reject_broken_files(tmp_path: Path) -> None:
    """The checks can fail: a job without `runs-on` (actionlint and the schema), an
    unknown job keyword in the GitLab pipeline (the schema)."""
    bad_github = tmp_path / "bad.yml"
    bad_github.write_text(
        GITHUB.read_text().replace("    runs-on: ubuntu-24.04\n", "    runs_on: ubuntu-24.04\n")
    )
    lint = run_actionlint(bad_github)
    assert lint.returncode != 0 and "runs-on" in lint.stdout, lint.stdout
    assert check_jsonschema("vendor.github-workflows", bad_github).returncode != 0
    bad_gitlab = tmp_path / ".gitlab-ci.yml"
    bad_gitlab.write_text(GITLAB.read_text().replace("  timeout: 25 minutes", "  timeuot: 25"))
    assert check_jsonschema("vendor.gitlab-ci", bad_gitlab).returncode != 0


@pytest.mark.parametrize("path", [GITHUB, GITLAB])
def test_the_scenarios_the_docker_jobs_leave_out_exist(path: Path) -> None:
    """The Docker jobs leave out the scenarios that need the local stack by name: those
    names are in the catalogue (a rename would silently run them on Docker and fail)."""
    from scenarios.run.catalogue import load_catalogue

    names = {s.name for s in load_catalogue()}
    for name in ("redis-sigkill", "two-instances-invalidation"):
        assert f"-e {name}" in path.read_text()
        assert name in names
