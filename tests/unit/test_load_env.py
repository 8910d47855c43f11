"""The load contract (`LoadEnv`): what `stormproof load` passes is what the locustfile reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios.load.env import LoadEnv


def test_round_trip_through_the_environment() -> None:
    """Every field survives to_env() -> from_env(), including paths and lists."""
    sent = LoadEnv(
        phases=(1.5, 6.0, 7.25),
        warmup_s=0.0,
        users=3,
        spawn_rate=1.5,
        user_rps=2.5,
        timeout_s=4.0,
        fault="postgres-latency",
        toxiproxy_url="http://127.0.0.1:8474",
        ids=("a", "b"),
        cache_keys=("k",),
        acks=Path("/tmp/acks.txt"),
        phase_log=Path("/tmp/phases.json"),
    )
    assert LoadEnv.from_env(sent.to_env()) == sent


def test_an_empty_environment_gives_the_by_hand_defaults() -> None:
    """Run by hand with no variables: the documented defaults, all users at once."""
    got = LoadEnv.from_env({})
    assert got == LoadEnv()
    assert got.phases == (20.0, 20.0, 20.0) and got.users_per_s == 20.0
    assert got.ids[0] == "load-1" and len(got.cache_keys) == 20
    assert got.acks is None and got.phase_log is None


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("STORMPROOF_LOAD_PHASES", "1,2"),
        ("STORMPROOF_LOAD_USERS", "0"),
        ("STORMPROOF_LOAD_USER_RPS", "fast"),
        ("STORMPROOF_LOAD_WARMUP_S", "-1"),
        ("STORMPROOF_LOAD_IDS", " , "),
    ],
)
def test_a_bad_value_names_the_variable(name: str, raw: str) -> None:
    """A bad value stops start-up with a one-line error that names the variable."""
    with pytest.raises(ValueError, match=f"^{name}="):
        LoadEnv.from_env({name: raw})
