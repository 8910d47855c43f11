"""`python -m scenarios.variants.naive`: the reference service without a breaker or timeouts.

What the seed's first implementation did with Redis, rebuilt from the reference's own code:

- the circuit breakers never open (failure threshold 2**31 - 1 consecutive failures), so
  every request keeps trying Redis however dead it is;
- Redis operations get a 30 s timeout (REDIS_OP_TIMEOUT_MS=30000) instead of 250 ms, i.e.
  effectively none: a call into a black hole waits until the client gives up.

Everything else is the reference, unchanged and configured from the same environment (the
audit paths keep their own AUDITORIA_TIMEOUT_MS, so no acknowledged event is lost here: this
variant is about availability and latency, not durability). Nothing is monkeypatched: the
settings object is rebuilt with `dataclasses.replace` before the app is created.
"""

from __future__ import annotations

import dataclasses
import os

from reference.config import Settings, load_settings_or_exit
from reference.service.__main__ import serve

NEVER_OPENS = 2**31 - 1
"""Consecutive failures before a breaker opens: more than any run will make."""
REDIS_TIMEOUT_S = 30.0
"""The per-operation Redis timeout (the reference's default is 0.25 s)."""


def naive_settings(settings: Settings) -> Settings:
    """`settings` with the breaker never opening and the Redis timeout at 30 s."""
    return dataclasses.replace(
        settings, breaker_failure_threshold=NEVER_OPENS, redis_op_timeout_s=REDIS_TIMEOUT_S
    )


def main() -> None:
    """Run the naive variant: the reference with breakers that never open, 30-s Redis timeouts."""
    serve(naive_settings(load_settings_or_exit(os.environ)))


if __name__ == "__main__":
    main()
