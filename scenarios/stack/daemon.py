"""`stormproof stack up` in the background: hold a stack until SIGTERM, then tear it down.

Run as `python -m scenarios.stack.daemon --state-dir DIR [--provider NAME] [--redis MODE]`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from scenarios.stack.base import install_sigterm_cleanup
from scenarios.stack.envfile import write_env_file
from scenarios.stack.errors import StackError
from scenarios.stack.providers import open_stack

ENV_FILE = "stack.env"
STATE_FILE = "stack.json"


def main(argv: list[str] | None = None) -> int:
    """Run a stack in the background until SIGTERM, its URLs in stack.env."""
    parser = argparse.ArgumentParser(prog="scenarios.stack.daemon")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--provider", default=None)
    parser.add_argument("--redis", default="single", choices=("single", "replicated"))
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir.resolve()
    install_sigterm_cleanup()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        stack = open_stack(args.provider, base_dir=state_dir / "run", redis_mode=args.redis)
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr, flush=True)
        return 1
    try:
        pids = {name: svc.pid for name, svc in stack.services.items()}
        (state_dir / STATE_FILE).write_text(
            json.dumps({"pid": os.getpid(), "provider": stack.provider, "services": pids})
        )
        write_env_file(state_dir / ENV_FILE, stack.urls.as_env())
        print(f"stack up: {stack.urls}", flush=True)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        stack.close()
        for name in (ENV_FILE, STATE_FILE):
            (state_dir / name).unlink(missing_ok=True)
        print("stack down", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
