"""Invalidation messages and the subscriber's timing settings."""

from __future__ import annotations

import pytest

from reference.invalidation import SubscriberTiming, decode_message, encode_message


def test_message_round_trip() -> None:
    """A message carries the key and the sender; bytes (as Redis delivers them) decode."""
    raw = encode_message("beneficio:7", "instance-a", "set")
    assert decode_message(raw) == ("beneficio:7", "instance-a")
    assert decode_message(raw.encode()) == ("beneficio:7", "instance-a")


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[1, 2]", b'{"key": "k"}', b'{"key": 1, "from": "a"}', None, 42],
)
def test_foreign_or_malformed_messages_are_rejected(data: object) -> None:
    """Anything that is not {"key": str, "from": str, ...} is not an invalidation."""
    assert decode_message(data) is None


def test_timing_rejects_nonsense() -> None:
    """SubscriberTiming validates its values."""
    with pytest.raises(ValueError):
        SubscriberTiming(ping_interval_s=0)
    with pytest.raises(ValueError):
        SubscriberTiming(backoff_initial_s=2, backoff_max_s=1)
