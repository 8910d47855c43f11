"""The `stormproof` command line.

Exit codes: 0 ok, 1 an expectation or check failed, 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

from reference.audit import journal_replay
from reference.audit.journal_cli import main_verify
from scenarios.bench import audit as bench_audit
from scenarios.bench import cache as bench_cache
from scenarios.bench import fs as bench_fs
from scenarios.drill import cli as drill_cli
from scenarios.load import command as load_command
from scenarios.run import cli as run_cli
from scenarios.run.scenario import ScenarioError
from scenarios.stack import control, open_stack
from scenarios.stack.base import install_sigterm_cleanup
from scenarios.stack.errors import StackError
from scenarios.stack.smoke import smoke_test

DEFAULT_STATE_DIR = Path(".stormproof")
Handler = Callable[[argparse.Namespace], int]
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
BENCHES: dict[str, Callable[..., int]] = {
    "cache": bench_cache.main,
    "audit": bench_audit.main,
    "fs": bench_fs.main,
}


def _stack(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    if args.action == "up":
        print(control.stack_up(state_dir, args.provider, args.redis))
        return 0
    if args.action == "smoke":
        with open_stack(args.provider, redis_mode=args.redis) as stack:
            print(f"stack up ({stack.provider}): {stack.urls.toxiproxy_url}")
            for line in smoke_test(stack):
                print(f"  ok  {line}")
        print("stack down")
        return 0
    if args.action == "down":
        print(control.stack_down(state_dir))
        return 0
    code, report = control.stack_status(state_dir)
    print(report)
    return code


def _journal(args: argparse.Namespace) -> int:
    return main_verify([str(args.directory), "--hmac-key-env", args.hmac_key_env])


def _dead_letters(args: argparse.Namespace) -> int:
    from reference.audit.dead_letters import main as dead_letters_main

    argv = ["--database-url-env", args.database_url_env]
    return dead_letters_main([*argv, "--redrive"] if args.redrive else argv)


def _bench(args: argparse.Namespace) -> int:
    return BENCHES[args.subject](json_output=args.json)


def register_stack(commands: Commands) -> None:
    """`stormproof stack up|down|status|smoke`."""
    stack = commands.add_parser("stack", help="a background stack: Redis, PostgreSQL, Toxiproxy")
    stack.add_argument(
        "action",
        choices=["up", "down", "status", "smoke"],
        help="up: start in the background; status: 0 up, 1 none, 3 not answering; "
        "smoke: up, prove both proxies, down",
    )
    stack.add_argument("--provider", default=None, help="local | external | docker")
    stack.add_argument(
        "--redis",
        default="single",
        choices=("single", "replicated"),
        help="replicated: a primary, 2 replicas and 3 Sentinels (local provider; "
        "docs/redis-replication.md)",
    )
    stack.add_argument(
        "--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="where stack.env is written"
    )
    stack.set_defaults(handler=_stack)


def register_journal(commands: Commands) -> None:
    """`stormproof journal verify DIR` and `stormproof journal replay DIR`."""
    journal = commands.add_parser("journal", help="inspect an audit journal")
    journal_actions = journal.add_subparsers(dest="action", required=True)
    verify = journal_actions.add_parser("verify", help="report corrupt records and chain breaks")
    verify.add_argument("directory", type=Path, help="the journal (AUDITORIA_BACKUP_PATH)")
    verify.add_argument(
        "--hmac-key-env", default="AUDITORIA_HMAC_KEY", help="variable holding the HMAC key"
    )
    verify.set_defaults(handler=_journal)
    replay = journal_actions.add_parser(
        "replay", help="replay a journal directory into audit_log (resumable, idempotent)"
    )
    journal_replay.add_arguments(replay)
    replay.set_defaults(handler=journal_replay.run_cli)


def register_audit(commands: Commands) -> None:
    """`stormproof audit dead-letters [--redrive]`."""
    audit = commands.add_parser("audit", help="the audit's dead letters")
    audit_actions = audit.add_subparsers(dest="action", required=True)
    dead = audit_actions.add_parser(
        "dead-letters", help="list them; --redrive moves the valid events into audit_log"
    )
    dead.add_argument("--redrive", action="store_true", help="insert the valid events")
    dead.add_argument(
        "--database-url-env", default="DATABASE_URL", help="variable holding the database URL"
    )
    dead.set_defaults(handler=_dead_letters)


def register_bench(commands: Commands) -> None:
    """`stormproof bench cache|audit|fs`."""
    bench = commands.add_parser("bench", help="benchmarks: figures as ratios to a raw baseline")
    bench.add_argument("subject", choices=sorted(BENCHES), help="what to measure")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(handler=_bench)


COMMANDS: tuple[Callable[[Commands], None], ...] = (
    register_stack,
    register_journal,
    register_audit,
    register_bench,
    run_cli.register,
    load_command.register,
    drill_cli.register,
)
"""Every sub-command, registered the same way: a module's `register(commands)`."""


def build_parser() -> argparse.ArgumentParser:
    """The `stormproof` argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="stormproof", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for register in COMMANDS:
        register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one `stormproof` command; returns its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    install_sigterm_cleanup()  # a cancelled CI job (SIGTERM) still stops its stacks
    try:
        return handler(args)
    except (StackError, ScenarioError) as exc:
        print(f"stormproof: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stormproof: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
