"""A small typed client for the Toxiproxy HTTP API, with a timeout on every call.

Replaces toxiproxy-python (no timeouts, class-level globals, POST updates): see
docs/DECISIONS.md. Errors say what was asked and what the server answered.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

Stream = Literal["upstream", "downstream"]
DEFAULT_TIMEOUT_S = 5.0
_toxic_names = itertools.count(1)


class ToxiproxyError(Exception):
    """The Toxiproxy server refused or failed a request (or could not be reached)."""

    def __init__(self, method: str, path: str, status: int | None, answer: str) -> None:
        self.method, self.path, self.status, self.answer = method, path, status, answer
        got = f"HTTP {status}: {answer}" if status is not None else answer
        super().__init__(f"toxiproxy {method} {path} failed: {got}")


@dataclass(frozen=True)
class Toxic:
    """A toxic as the server reports it."""

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProxySpec:
    """What a proxy should be: used by create and `/populate`."""

    name: str
    listen: str
    upstream: str
    enabled: bool = True

    def as_json(self) -> dict[str, Any]:
        """The proxy as Toxiproxy's API expects it."""
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
        }


class Toxiproxy:
    """Client for one Toxiproxy server (`url` like http://127.0.0.1:8474)."""

    def __init__(
        self,
        url: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            headers={"User-Agent": "stormproof"},
        )

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()

    def __enter__(self) -> Toxiproxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One API call; returns the decoded JSON (or None) or raises ToxiproxyError."""
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ToxiproxyError(method, path, None, f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise ToxiproxyError(method, path, response.status_code, _reason(response))
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    # server
    def version(self) -> str:
        """The server's version string."""
        answer = self.request("GET", "/version")
        if isinstance(answer, dict):
            return str(answer.get("version", answer))
        return str(answer).strip()

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self.request("POST", "/reset")

    def populate(self, specs: list[ProxySpec]) -> list[Proxy]:
        """Create or replace proxies in one call."""
        answer = self.request("POST", "/populate", [s.as_json() for s in specs])
        items = answer.get("proxies", []) if isinstance(answer, dict) else answer
        return [self._proxy(item) for item in items]

    # proxies
    def proxies(self) -> dict[str, Proxy]:
        """Every proxy the server has, by name."""
        answer = self.request("GET", "/proxies")
        return {name: self._proxy(item) for name, item in answer.items()}

    def proxy(self, name: str) -> Proxy:
        """The named proxy, fetched from the server."""
        return self._proxy(self.request("GET", f"/proxies/{name}"))

    def create_proxy(self, spec: ProxySpec) -> Proxy:
        """Create a proxy; returns its handle."""
        return self._proxy(self.request("POST", "/proxies", spec.as_json()))

    def delete_proxy(self, name: str) -> None:
        """Delete the named proxy."""
        self.request("DELETE", f"/proxies/{name}")

    def _proxy(self, item: Mapping[str, Any]) -> Proxy:
        return Proxy(
            client=self,
            name=str(item["name"]),
            listen=str(item["listen"]),
            upstream=str(item["upstream"]),
            enabled=bool(item["enabled"]),
        )


@dataclass(frozen=True)
class Proxy:
    """A proxy's state when it was read, plus the operations on it."""

    client: Toxiproxy = field(repr=False, compare=False)
    name: str
    listen: str
    upstream: str
    enabled: bool

    @property
    def path(self) -> str:
        """The proxy's API path."""
        return f"/proxies/{self.name}"

    @property
    def listen_port(self) -> int:
        """The port the proxy listens on."""
        return int(self.listen.rsplit(":", 1)[1])

    def refresh(self) -> Proxy:
        """The proxy's current state, fetched from the server."""
        return self.client.proxy(self.name)

    def update(self, **changes: Any) -> Proxy:
        """PATCH listen/upstream/enabled."""
        return self.client._proxy(self.client.request("PATCH", self.path, changes))

    def enable(self) -> Proxy:
        """Enable the proxy (connections accepted again)."""
        return self.update(enabled=True)

    def disable(self) -> Proxy:
        """Refuse new connections and close the open ones."""
        return self.update(enabled=False)

    def delete(self) -> None:
        """Delete the proxy."""
        self.client.delete_proxy(self.name)

    # toxics
    def toxics(self) -> list[Toxic]:
        """The proxy's toxics."""
        return [_toxic(t) for t in self.client.request("GET", f"{self.path}/toxics")]

    def add_toxic(
        self,
        type: str,
        attributes: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        stream: Stream = "downstream",
        toxicity: float = 1.0,
    ) -> Toxic:
        """Add a toxic; returns it (with the server's name for it)."""
        body = {
            "name": name or f"{type}_{stream}_{next(_toxic_names)}",
            "type": type,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": dict(attributes or {}),
        }
        return _toxic(self.client.request("POST", f"{self.path}/toxics", body))

    def update_toxic(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        *,
        toxicity: float | None = None,
    ) -> Toxic:
        """Change a toxic's attributes."""
        body: dict[str, Any] = {}
        if attributes is not None:
            body["attributes"] = dict(attributes)
        if toxicity is not None:
            body["toxicity"] = toxicity
        return _toxic(self.client.request("PATCH", f"{self.path}/toxics/{name}", body))

    def remove_toxic(self, name: str) -> None:
        """Remove the named toxic."""
        self.client.request("DELETE", f"{self.path}/toxics/{name}")

    @contextmanager
    def down(self) -> Iterator[Proxy]:
        """Disable the proxy for the block; always re-enabled afterwards."""
        self.disable()
        try:
            yield self
        finally:
            self.enable()

    @contextmanager
    def toxic(
        self,
        type: str,
        *,
        stream: Stream = "downstream",
        toxicity: float = 1.0,
        name: str | None = None,
        **attributes: Any,
    ) -> Iterator[Toxic]:
        """Add a toxic for the block; always removed afterwards."""
        added = self.add_toxic(type, attributes, name=name, stream=stream, toxicity=toxicity)
        try:
            yield added
        finally:
            try:
                self.remove_toxic(added.name)
            except ToxiproxyError as exc:
                if exc.status != 404:  # already gone (a reset): nothing to revert
                    raise


def _toxic(item: Mapping[str, Any]) -> Toxic:
    return Toxic(
        name=str(item["name"]),
        type=str(item["type"]),
        stream=str(item.get("stream", "downstream")),
        toxicity=float(item.get("toxicity", 1.0)),
        attributes=dict(item.get("attributes") or {}),
    )


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return str(body)
