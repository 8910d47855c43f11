"""Drills as data: validation, and the runbook kept in step with the drills."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from scenarios.drill.runbook import RUNBOOK, check_runbook, render_drill, write_runbook
from scenarios.drill.spec import DrillError, load_drills, parse_drill
from scenarios.webhook import WebhookReceiver


def test_runbook_matches_the_drills() -> None:
    """docs/runbook.md holds exactly the generated section of every drill."""
    assert check_runbook(load_drills(), RUNBOOK) == []


def test_a_drifted_runbook_is_reported(tmp_path: Path) -> None:
    """A command changed in the drills but not in the runbook is reported, naming the drill;
    regenerating fixes it."""
    drills = load_drills()
    runbook = tmp_path / "runbook.md"
    runbook.write_text(RUNBOOK.read_text())
    first = drills[0]
    step = next(s for s in first.steps if s.run)
    changed = replace(first, steps=(replace(step, run=step.run + " -v"), *first.steps[1:]))
    drifted = [changed, *drills[1:]]
    problems = check_runbook(drifted, runbook)
    assert len(problems) == 1 and repr(first.name) in problems[0], problems
    write_runbook(drifted, runbook)
    assert check_runbook(drifted, runbook) == []


def test_every_operator_step_shows_its_command_and_its_check() -> None:
    """Each operator step of each drill appears in the runbook with its command and a check."""
    for drill in load_drills():
        text = render_drill(drill)
        for step in drill.steps:
            if step.is_incident:
                assert f"*Incident*: {step.say}." in text
            else:
                assert f"   {step.run}\n" in text and step.expect
        assert text.count("Check: ") == sum(not s.is_incident for s in drill.steps)


def test_the_required_drills_exist() -> None:
    """The issue's drills are in the file."""
    names = {d.name for d in load_drills()}
    assert {
        "redis-outage",
        "postgres-outage",
        "lost-instance",
        "corrupt-journal",
        "dead-letters",
    } <= names


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        ({"say": "x", "run": "true"}, "needs the expectation"),
        ({"say": "x", "incident": {"explode": True}}, "incident must be one of"),
        ({"say": "x", "incident": {"fault": "redis-nope"}}, "unknown fault"),
        ({"run": "true", "expect": {"exit": 0}}, "needs `say`"),
        ({"say": "x", "run": "true", "expect": {"exitt": 0}}, "unknown expectation"),
        ({"say": "x", "run": "true", "incident": {"heal": True}}, "either an incident"),
    ],
)
def test_bad_steps_are_refused_in_one_line(step: dict[str, object], reason: str) -> None:
    """A bad step is refused before anything runs, naming the drill and the step."""
    with pytest.raises(DrillError, match=reason) as raised:
        parse_drill({"name": "d", "step": [step]})
    assert "drill 'd' step 1" in str(raised.value) or "needs `say`" in reason


def test_webhook_receiver_answers_what_fired_and_resolved() -> None:
    """The receiver keeps alerts in order and tells whether one is firing."""
    with WebhookReceiver() as receiver:
        for state in ("firing", "resolved", "firing"):
            response = httpx.post(receiver.url, json={"name": "A", "state": state}, timeout=5)
            assert response.status_code == 204
        assert httpx.post(receiver.url, content=b"[1]", timeout=5).status_code == 400
        status = httpx.get(f"{receiver.url}/alerts/A", timeout=5).json()
        assert status == {"name": "A", "firing": True, "fired": 2, "resolved": 1}
        assert json.loads(httpx.get(f"{receiver.url}/alerts/B", timeout=5).text)["firing"] is False
        assert [a.state for a in receiver.alerts()] == ["firing", "resolved", "firing"]


def test_drill_command_line_refuses_bad_input_and_checks_the_runbook(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Unknown drill or nothing named: exit 2 with one line; --check-runbook: 0 in step."""
    from scenarios.cli import main

    assert main(["drill", "no-such-drill"]) == 2
    assert "unknown drill(s) ['no-such-drill']" in capsys.readouterr().err
    assert main(["drill"]) == 2
    assert main(["drill", "--all", "redis-outage"]) == 2
    assert main(["drill", "--check-runbook"]) == 0
