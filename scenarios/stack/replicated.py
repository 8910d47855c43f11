"""A replicated Redis for the local stack: one primary, replicas, three Sentinels, proxies.

Every node `N` (node 0 is named `redis`, the others `redis.n1`, `redis.n2`) has two
Toxiproxy proxies:

- `N`: the clients' path (the service, the harness);
- `N.peer`: the peers' path: Sentinels monitor the node there, and replicas replicate
  from it there (nodes announce their peer port with `replica-announce-port`, so Sentinel
  knows every node by its peer address and tells replicas to follow that address after a
  failover: the two cannot be told apart without rewriting Sentinel's REPLICAOF).

Cutting `N.peer` partitions the node from the Sentinels and the replicas while its
clients still reach it; cutting `N` cuts it from its clients only. Sentinel hands out
peer addresses, so clients map them to client addresses with the table written to
`REDIS_SENTINEL_ADDRESS_MAP` (docs/DECISIONS.md, docs/redis-replication.md). Every node
has `min-replicas-to-write` (an isolated primary stops taking writes after
`min-replicas-max-lag`). Node and Sentinel processes are ManagedProcess children (own
process group, stopped on every exit path by the LocalStack that owns them).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import redis

from scenarios.ports import free_port
from scenarios.stack.base import StackUrls
from scenarios.stack.errors import StackError
from scenarios.stack.process import ManagedProcess
from scenarios.toxiproxy import ProxySpec, Toxiproxy

__all__ = ["ReplicatedRedis", "ReplicationConfig", "node_name"]

HOST = "127.0.0.1"
_TIMEOUT_S = 0.5


@dataclass(frozen=True)
class ReplicationConfig:
    """The shape and timing of the replicated set (short timings: failover in ~2-4 s)."""

    replicas: int = 2
    sentinels: int = 3
    quorum: int = 2
    master_name: str = "stormproof"
    down_after_ms: int = 1000
    failover_timeout_ms: int = 4000
    min_replicas_to_write: int = 1
    min_replicas_max_lag_s: int = 2
    appendfsync: str = "always"
    converge_timeout_s: float = 40.0


def node_name(index: int) -> str:
    """Node 0 is `redis` (the single-node stack's name: its faults apply to the primary)."""
    return "redis" if index == 0 else f"redis.n{index}"


@dataclass(frozen=True)
class _Node:
    index: int
    port: int
    client_port: int
    peer_port: int

    @property
    def name(self) -> str:
        return node_name(self.index)

    @property
    def peer(self) -> str:
        return f"{HOST}:{self.peer_port}"


class _NodeProcess(ManagedProcess):
    """A node whose config is rewritten before every (re)start: a node restarted after a
    crash rejoins as a replica of the primary the Sentinels name (as an operator's restart
    would), instead of coming back as a second primary until Sentinel notices (8 s+)."""

    def __init__(self, owner: ReplicatedRedis, node: _Node, **kwargs: object) -> None:
        self._owner = owner
        self._node = node
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def start(self, timeout_s: float = 30.0) -> None:
        if not self.running and self._owner.watched:
            primary = self._owner.sentinel_primary()
            if primary is not None:  # no Sentinel answers: the config as it was
                self._owner.write_node_config(self._node, primary)
        super().start(timeout_s)


class ReplicatedRedis:
    """Starts, watches, heals and resets the nodes and Sentinels (see the module docstring).

    `spawn` starts a ManagedProcess and keeps it for the owner's close (LocalStack's)."""

    def __init__(
        self,
        config: ReplicationConfig,
        root: Path,
        toxiproxy: Toxiproxy,
        spawn: Callable[[ManagedProcess], None],
        redis_bin: str,
        sentinel_bin: str,
        timeout_s: float = 60.0,
    ) -> None:
        self.config = config
        self._root = root
        self._toxiproxy = toxiproxy
        self._spawn = spawn
        self._redis_bin = redis_bin
        self._sentinel_bin = sentinel_bin
        self._timeout = timeout_s
        self.nodes = [
            _Node(i, free_port(), free_port(), free_port()) for i in range(config.replicas + 1)
        ]
        self.sentinel_ports = [free_port() for _ in range(config.sentinels)]
        self.node_processes: list[ManagedProcess] = []
        self.sentinel_processes: list[ManagedProcess] = []
        self.watched = False
        """True once the Sentinels watch the set (restarted nodes then ask them)."""

    # -- what clients are told ------------------------------------------------------------

    @property
    def client_url(self) -> str:
        """Node 0 through its client proxy (REDIS_URL: the initial primary)."""
        return f"redis://{HOST}:{self.nodes[0].client_port}/0"

    @property
    def direct_url(self) -> str:
        """Node 0, no proxy (REDIS_DIRECT_URL: node 0 is the primary after `reset`)."""
        return f"redis://{HOST}:{self.nodes[0].port}/0"

    def env(self) -> dict[str, str]:
        """REDIS_SENTINEL_URLS, REDIS_SENTINEL_MASTER and REDIS_SENTINEL_ADDRESS_MAP."""
        return {
            "REDIS_SENTINEL_URLS": ",".join(f"redis://{HOST}:{p}" for p in self.sentinel_ports),
            "REDIS_SENTINEL_MASTER": self.config.master_name,
            "REDIS_SENTINEL_ADDRESS_MAP": ",".join(
                f"{n.peer}={HOST}:{n.client_port}" for n in self.nodes
            ),
        }

    def urls(self, urls: StackUrls) -> StackUrls:
        """`urls` with REDIS_URL and REDIS_DIRECT_URL on node 0 and the Sentinel settings."""
        return replace(
            urls,
            redis_url=self.client_url,
            redis_direct_url=self.direct_url,
            redis_sentinel_urls=self.env()["REDIS_SENTINEL_URLS"],
            redis_sentinel_master=self.config.master_name,
            redis_sentinel_address_map=self.env()["REDIS_SENTINEL_ADDRESS_MAP"],
        )

    def services(self) -> dict[str, ManagedProcess]:
        """Nodes by name (`redis`, `redis.n1`, ...) and Sentinels (`sentinel.1`, ...)."""
        named = {node_name(i): p for i, p in enumerate(self.node_processes)}
        named.update({f"sentinel.{i + 1}": p for i, p in enumerate(self.sentinel_processes)})
        return named

    # -- start ----------------------------------------------------------------------------

    def start(self) -> None:
        """Proxies, nodes (node 0 primary), then Sentinels; returns once all agree."""
        for node in self.nodes:
            for name, port in (
                (node.name, node.client_port),
                (f"{node.name}.peer", node.peer_port),
            ):
                self._toxiproxy.create_proxy(
                    ProxySpec(name, f"{HOST}:{port}", f"{HOST}:{node.port}")
                )
        for node in self.nodes:
            (self._dir(node)).mkdir(exist_ok=True)
            self.write_node_config(node, None if node.index == 0 else self.nodes[0])
            node_process = _NodeProcess(
                self,
                node,
                name=node.name,
                argv=[self._redis_bin, str(self._root / f"{node.name}.conf")],
                log_path=self._root / f"{node.name}.log",
                ready=lambda n=node: _answers(n.port),
            )
            self.node_processes.append(node_process)
            self._spawn(node_process)
        for index, port in enumerate(self.sentinel_ports):
            conf = self._root / f"sentinel-{index + 1}.conf"
            self._write_sentinel_config(conf, port)
            process = ManagedProcess(
                f"sentinel.{index + 1}",
                [self._sentinel_bin, str(conf)],
                log_path=self._root / f"sentinel-{index + 1}.log",
                ready=lambda p=port: _answers(p),  # type: ignore[misc]
            )
            self.sentinel_processes.append(process)
            self._spawn(process)
        self.converge(require_primary=0)
        self.watched = True

    def _dir(self, node: _Node) -> Path:
        return self._root / f"redis-node-{node.index}"

    def write_node_config(self, node: _Node, primary: _Node | None) -> None:
        """The node's config file: a replica of `primary`'s peer address, or a primary."""
        c = self.config
        lines = [
            f"port {node.port}",
            f"bind {HOST}",
            f"dir {self._dir(node)}",
            "daemonize no",
            "protected-mode no",
            "appendonly yes",
            f"appendfsync {c.appendfsync}",
            'save ""',
            "maxclients 2000",
            f"replica-announce-ip {HOST}",
            f"replica-announce-port {node.peer_port}",
            f"min-replicas-to-write {c.min_replicas_to_write}",
            f"min-replicas-max-lag {c.min_replicas_max_lag_s}",
            "repl-diskless-sync yes",
            "repl-diskless-sync-delay 0",
            "repl-ping-replica-period 1",
            "repl-timeout 5",
        ]
        if primary is not None and primary.index != node.index:
            lines.append(f"replicaof {HOST} {primary.peer_port}")
        (self._root / f"{node.name}.conf").write_text("\n".join(lines) + "\n")

    def _write_sentinel_config(self, path: Path, port: int) -> None:
        c = self.config
        name = c.master_name
        work = self._root / path.stem
        work.mkdir(exist_ok=True)
        path.write_text(
            "\n".join(
                [
                    f"port {port}",
                    f"bind {HOST}",
                    f"dir {work}",
                    "daemonize no",
                    "protected-mode no",
                    f"sentinel announce-ip {HOST}",
                    f"sentinel monitor {name} {HOST} {self.nodes[0].peer_port} {c.quorum}",
                    f"sentinel down-after-milliseconds {name} {c.down_after_ms}",
                    f"sentinel failover-timeout {name} {c.failover_timeout_ms}",
                    f"sentinel parallel-syncs {name} {c.replicas}",
                ]
            )
            + "\n"
        )

    # -- what the Sentinels say -----------------------------------------------------------

    def sentinel_primary(self) -> _Node | None:
        """The node the first answering Sentinel names as primary (None: none answers)."""
        for port in self.sentinel_ports:
            try:
                address = _primary_address(port, self.config.master_name)
            except (redis.RedisError, OSError):
                continue
            if address:
                return self._by_peer(int(address[1]))
        return None

    def primary_index(self) -> int | None:
        """The index of the node every running Sentinel names as primary (None: they
        disagree, or one does not answer)."""
        seen = set()
        for port in self.sentinel_ports:
            try:
                address = _primary_address(port, self.config.master_name)
            except (redis.RedisError, OSError):
                return None
            node = self._by_peer(int(address[1])) if address else None
            if node is None:
                return None
            seen.add(node.index)
        return seen.pop() if len(seen) == 1 else None

    def _by_peer(self, peer_port: int) -> _Node | None:
        return next((n for n in self.nodes if n.peer_port == peer_port), None)

    # -- converge, heal, reset ------------------------------------------------------------

    def settled(self, require_primary: int | None = None) -> str | None:
        """None when the set is settled (one primary named by every Sentinel, not in
        failover, every other node its replica with the link up); else what is not."""
        index = self.primary_index()
        if index is None:
            return "the Sentinels do not agree on a primary"
        if require_primary is not None and index != require_primary:
            return f"the primary is {node_name(index)}, not {node_name(require_primary)}"
        primary = self.nodes[index]
        for port in self.sentinel_ports:
            with _client(port) as sentinel:
                state = sentinel.sentinel_master(self.config.master_name)
            flags = str(state.get("flags", ""))
            if flags != "master":
                return f"Sentinel {port} flags the primary {flags!r}"
            if int(state.get("num-other-sentinels", 0)) < self.config.sentinels - 1:
                return f"Sentinel {port} does not know its peers yet"
            if int(state.get("num-slaves", 0)) < self.config.replicas:
                return f"Sentinel {port} does not know every replica yet"
        for node in self.nodes:
            with _client(node.port) as client:
                info = client.info("replication")
            if node is primary:
                if info.get("role") != "master":
                    return f"{node.name} is not a primary"
                online = sum(
                    1
                    for k, v in info.items()
                    if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
                )
                if online < self.config.replicas:
                    return f"{node.name} has {online} replica(s) online"
            elif (
                info.get("role") != "slave" or int(info.get("master_port", 0)) != primary.peer_port
            ):
                return f"{node.name} is not a replica of {primary.name}"
            elif info.get("master_link_status") != "up":
                return f"{node.name}'s link to {primary.name} is down"
        return None

    def converge(self, require_primary: int | None = None, timeout_s: float | None = None) -> None:
        """Wait until `settled`; StackError with what is not, after the timeout."""
        deadline = time.monotonic() + (timeout_s or self.config.converge_timeout_s)
        problem: str | None = "not checked"
        while time.monotonic() < deadline:
            try:
                problem = self.settled(require_primary)
            except (redis.RedisError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem is None:
                return
            time.sleep(0.1)
        raise StackError(f"replicated Redis not settled: {problem}")

    def heal(self) -> None:
        """After the stack's heal (processes restarted, proxies reset): wait until the set
        settles, whichever node is primary (an old primary rejoins as a replica)."""
        self.converge()

    def reset(self) -> None:
        """Node 0 primary, data empty: if a failover moved the primary (or the set does not
        settle), every node and Sentinel is restarted afresh (~3 s)."""
        try:
            self.converge(require_primary=0, timeout_s=2.0)
            return
        except StackError:
            pass
        self.watched = False
        for process in [*self.sentinel_processes, *self.node_processes]:
            process.stop()
        for node in self.nodes:
            shutil.rmtree(self._dir(node), ignore_errors=True)
            self._dir(node).mkdir()
            self.write_node_config(node, None if node.index == 0 else self.nodes[0])
        for index, port in enumerate(self.sentinel_ports):
            self._write_sentinel_config(self._root / f"sentinel-{index + 1}.conf", port)
        for process in [*self.node_processes, *self.sentinel_processes]:
            process.start(self._timeout)  # not watched: the fresh config, as written
        self.converge(require_primary=0)
        self.watched = True


def _client(port: int) -> redis.Redis:
    return redis.Redis(
        host=HOST,
        port=port,
        socket_timeout=_TIMEOUT_S,
        socket_connect_timeout=_TIMEOUT_S,
        decode_responses=True,
    )


def _primary_address(port: int, master: str) -> tuple[str, int] | None:
    with _client(port) as sentinel:
        address = sentinel.sentinel_get_master_addr_by_name(master)
    return (str(address[0]), int(address[1])) if address else None


def _answers(port: int) -> bool:
    with _client(port) as client:
        return bool(client.ping())
