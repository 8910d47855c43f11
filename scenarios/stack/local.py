"""The embedded stack: redis-server, PostgreSQL and toxiproxy-server as our own children."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import redis

from scenarios.fs.disks import StackDisks
from scenarios.ports import free_port
from scenarios.stack.base import POSTGRES_PROXY, REDIS_PROXY, Stack, StackUrls, track
from scenarios.stack.errors import StackError
from scenarios.stack.process import ManagedProcess
from scenarios.toxiproxy import ProxySpec, Toxiproxy, ToxiproxyError

if TYPE_CHECKING:
    from scenarios.stack.replicated import ReplicatedRedis

DB_USER = "stormproof"
DB_NAME = "stormproof"
_HINT = "run scripts/bootstrap, or use docker compose with STORMPROOF_STACK=external"


def find_binary(name: str, env_var: str, extra_dirs: list[Path]) -> str:
    """The path of a server binary: $env_var, then PATH, then `extra_dirs`."""
    explicit = os.environ.get(env_var)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise StackError(f"{env_var}={explicit} is not an executable")
        return explicit
    found = shutil.which(name)
    if found:
        return found
    for directory in extra_dirs:
        candidate = directory / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise StackError(f"{name} not found ({_HINT})")


def _postgres_bin_dirs() -> list[Path]:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    return [Path(d) for d in reversed(dirs)]


def _tools_dirs() -> list[Path]:
    repo = Path(__file__).resolve().parents[2]
    return [Path.cwd() / ".tools" / "bin", repo / ".tools" / "bin"]


def _redis_ready(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    finally:
        client.close()


def _postgres_ready(url: str) -> bool:
    with psycopg.connect(url, connect_timeout=1) as conn:
        conn.execute("SELECT 1")
    return True


def _toxiproxy_ready(url: str) -> bool:
    with Toxiproxy(url, timeout_s=0.5) as client:
        client.version()
    return True


class LocalStack:
    """Builds and owns the processes and the temp dir of one local stack."""

    def __init__(
        self,
        base_dir: Path | None = None,
        startup_timeout_s: float = 60.0,
        *,
        redis_aof: bool = True,
        redis_appendfsync: str = "always",
        redis_mode: str = "single",
    ) -> None:
        if redis_mode not in REDIS_MODES:
            raise StackError(f"unknown Redis mode {redis_mode!r} (choose one of {REDIS_MODES})")
        self._redis_mode = redis_mode
        self._base_parent = base_dir
        self._redis_aof = redis_aof
        self._redis_set: ReplicatedRedis | None = None
        self._redis_appendfsync = redis_appendfsync
        self._disks: StackDisks | None = None
        self._timeout = startup_timeout_s
        self._processes: list[ManagedProcess] = []
        self.root: Path | None = None
        self._pg_root: Path | None = None

    def start(self) -> Stack:
        """Start Redis, PostgreSQL and Toxiproxy as local processes; the running stack."""
        redis_bin = find_binary("redis-server", "STORMPROOF_REDIS_SERVER", [])
        pg_dirs = _postgres_bin_dirs()
        initdb = find_binary("initdb", "STORMPROOF_INITDB", pg_dirs)
        postgres = find_binary("postgres", "STORMPROOF_POSTGRES", [Path(initdb).parent])
        toxiproxy_bin = find_binary(
            "toxiproxy-server", "STORMPROOF_TOXIPROXY_SERVER", _tools_dirs()
        )
        if self._base_parent:
            self._base_parent.mkdir(parents=True, exist_ok=True)
        # absolute: Redis, PostgreSQL and the FUSE disks get paths under it, from other cwds
        self.root = Path(
            tempfile.mkdtemp(prefix="stormproof-stack-", dir=self._base_parent)
        ).resolve()
        try:
            return self._start(redis_bin, initdb, postgres, toxiproxy_bin)
        except BaseException:
            self.close()
            raise

    def _start(self, redis_bin: str, initdb: str, postgres: str, toxiproxy_bin: str) -> Stack:
        assert self.root is not None
        root = self.root
        redis_port, pg_port, tp_port = free_port(), free_port(), free_port()
        redis_direct = f"redis://127.0.0.1:{redis_port}/0"
        pg_direct = f"postgresql://{DB_USER}@127.0.0.1:{pg_port}/{DB_NAME}"
        tp_url = f"http://127.0.0.1:{tp_port}"

        # Redis's dir and the targets' journals on forgetful disks (power cuts), if FUSE is here
        self._disks = StackDisks(root)
        self._disks.start()
        redis_dir = self._disks.path("redis")
        if self._redis_mode == "single":
            self._spawn_redis(redis_bin, redis_port, redis_dir, redis_direct)
        pg_user = "postgres" if os.geteuid() == 0 else None
        pgdata = self._init_postgres(initdb, pg_user)
        self._spawn(
            ManagedProcess(
                "postgres",
                [
                    postgres,
                    "-D",
                    str(pgdata),
                    "-p",
                    str(pg_port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={pgdata}",
                    "-c",
                    "max_connections=300",
                    "-c",
                    "shared_buffers=64MB",
                ],
                log_path=root / "postgres.log",
                ready=lambda: _postgres_ready(
                    f"postgresql://{DB_USER}@127.0.0.1:{pg_port}/postgres"
                ),
                user=pg_user,
                stop_signal=signal.SIGINT,  # fast shutdown
                death_signal=signal.SIGQUIT,  # immediate shutdown if we die
            )
        )
        with psycopg.connect(
            f"postgresql://{DB_USER}@127.0.0.1:{pg_port}/postgres",
            autocommit=True,
            connect_timeout=5,
        ) as conn:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')

        self._spawn(
            ManagedProcess(
                "toxiproxy-server",
                [toxiproxy_bin, "-host", "127.0.0.1", "-port", str(tp_port)],
                log_path=root / "toxiproxy.log",
                ready=lambda: _toxiproxy_ready(tp_url),
                env={**os.environ, "LOG_LEVEL": "warn"},
            )
        )
        client = Toxiproxy(tp_url)
        redis_listen, pg_listen = free_port(), free_port()
        specs = [ProxySpec(POSTGRES_PROXY, f"127.0.0.1:{pg_listen}", f"127.0.0.1:{pg_port}")]
        if self._redis_mode == "single":
            redis_proxy = ProxySpec(
                REDIS_PROXY, f"127.0.0.1:{redis_listen}", f"127.0.0.1:{redis_port}"
            )
            specs.insert(0, redis_proxy)
        try:
            client.populate(specs)
            if self._redis_mode == "replicated":
                self._start_replicated(client)
        except ToxiproxyError as exc:
            client.close()
            raise StackError(str(exc)) from exc
        except BaseException:
            client.close()
            raise
        urls = StackUrls(
            toxiproxy_url=tp_url,
            redis_url=f"redis://127.0.0.1:{redis_listen}/0",
            database_url=f"postgresql://{DB_USER}@127.0.0.1:{pg_listen}/{DB_NAME}",
            redis_direct_url=redis_direct,
            database_direct_url=pg_direct,
        )
        names = {"redis": self._processes[0]} if self._redis_mode == "single" else {}
        names |= {"postgres": self._named("postgres"), "toxiproxy": self._named("toxiproxy-server")}
        if self._redis_set is not None:
            urls = self._redis_set.urls(urls)
            names |= self._redis_set.services()
        return track(
            Stack(
                provider="local",
                urls=urls,
                toxiproxy=client,
                services=names,
                disks=self._disks,
                _closers=[self],
                redis_set=self._redis_set,
            )
        )

    def _named(self, name: str) -> ManagedProcess:
        return next(p for p in self._processes if p.name == name)

    def _start_replicated(self, client: Toxiproxy) -> None:
        """The replicated Redis (scenarios/stack/replicated.py) behind `client`'s proxies."""
        from scenarios.stack.replicated import ReplicatedRedis, ReplicationConfig

        assert self.root is not None
        self._redis_set = ReplicatedRedis(
            ReplicationConfig(appendfsync=self._redis_appendfsync),
            self.root,
            client,
            self._spawn,
            find_binary("redis-server", "STORMPROOF_REDIS_SERVER", []),
            find_binary("redis-sentinel", "STORMPROOF_REDIS_SENTINEL", []),
            self._timeout,
        )
        self._redis_set.start()

    def _spawn_redis(self, redis_bin: str, redis_port: int, redis_dir: Path, url: str) -> None:
        """The single redis-server (the default Redis mode)."""
        assert self.root is not None
        self._spawn(
            ManagedProcess(
                "redis-server",
                [
                    redis_bin,
                    "--port",
                    str(redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(redis_dir),
                    "--appendonly",
                    "yes" if self._redis_aof else "no",
                    "--appendfsync",
                    self._redis_appendfsync,
                    "--save",
                    "",
                    "--daemonize",
                    "no",
                    "--protected-mode",
                    "no",
                    "--maxclients",
                    "2000",
                ],
                log_path=self.root / "redis.log",
                ready=lambda: _redis_ready(url),
            )
        )

    def _init_postgres(self, initdb: str, user: str | None) -> Path:
        assert self.root is not None
        if user:
            # The postgres user must traverse every parent: use the system temp dir
            # (the caller's base dir may sit under a private 0700 directory).
            _sweep_stale_pg_roots()
            self._pg_root = Path(tempfile.mkdtemp(prefix=_PG_ROOT_PREFIX))
            os.chmod(self._pg_root, 0o711)
            (self._pg_root / "owner.pid").write_text(str(os.getpid()))
            pgdata = self._pg_root / "pgdata"
            pgdata.mkdir(mode=0o700)
            shutil.chown(pgdata, user, user)
        else:
            pgdata = self.root / "pgdata"
            pgdata.mkdir(mode=0o700)
        argv = [
            initdb,
            "-D",
            str(pgdata),
            "-U",
            DB_USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]
        try:
            done = subprocess.run(
                argv,
                user=user,
                group=user,
                extra_groups=[] if user else None,
                capture_output=True,
                text=True,
                timeout=self._timeout,
                cwd=pgdata.parent,
            )
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"initdb did not finish in {self._timeout:.0f}s") from exc
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise StackError(f"initdb failed (code {done.returncode}): {tail}")
        return pgdata

    def _spawn(self, process: ManagedProcess) -> None:
        self._processes.append(process)
        process.start(self._timeout)

    @property
    def pids(self) -> list[int]:
        """The pids of the processes still running."""
        return [p.pid for p in self._processes if p.pid is not None and p.running]

    def close(self) -> None:
        """Stop every process (newest first) and remove the temp dir."""
        processes, self._processes = self._processes, []
        errors = []
        for process in reversed(processes):
            try:
                process.stop()
            except StackError as exc:
                errors.append(str(exc))
        if self._disks is not None:
            self._disks.close()  # after Redis: nothing writes to them any more
            self._disks = None
        for directory in (self.root, self._pg_root):
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
        self.root = self._pg_root = None
        if errors:
            raise StackError("; ".join(errors))


_PG_ROOT_PREFIX = "stormproof-pg-"
REDIS_MODES = ("single", "replicated")
"""`--redis`: one redis-server, or a primary, replicas and Sentinels (replicated.py)."""


def _sweep_stale_pg_roots() -> None:
    """Stop the postmaster and remove the data dir of every owner that died without cleaning
    up (SIGKILL): a PostgreSQL restarted from a fault thread has no parent-death signal."""
    for owner_file in Path(tempfile.gettempdir()).glob(f"{_PG_ROOT_PREFIX}*/owner.pid"):
        try:
            pid = int(owner_file.read_text())
            os.kill(pid, 0)
        except ProcessLookupError:
            _kill_orphan_postmaster(owner_file.parent / "pgdata")
            shutil.rmtree(owner_file.parent, ignore_errors=True)
        except (OSError, ValueError):
            continue


def _kill_orphan_postmaster(pgdata: Path) -> None:
    """SIGKILL the postmaster of `pgdata` (its backends exit with it), if one still runs."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return
    if str(pgdata).encode() in cmdline:  # that pid is this data dir's postmaster, not a reuse
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_local_stack(
    base_dir: Path | None = None,
    *,
    redis_aof: bool = True,
    redis_appendfsync: str = "always",
    redis_mode: str = "single",
) -> Stack:
    """A local stack; `redis_aof=False` or `redis_appendfsync="everysec"` is a deliberately
    unsafe Redis (harness self-test); `redis_mode="replicated"` a primary, replicas and
    Sentinels (scenarios/stack/replicated.py)."""
    return LocalStack(
        base_dir, redis_aof=redis_aof, redis_appendfsync=redis_appendfsync, redis_mode=redis_mode
    ).start()
