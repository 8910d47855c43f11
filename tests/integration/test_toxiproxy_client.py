"""Our Toxiproxy client against the real server: CRUD, toxics, populate, errors, reverts."""

from __future__ import annotations

import pytest

from scenarios.ports import free_port
from scenarios.stack import Stack
from scenarios.toxiproxy import ProxySpec, Toxiproxy, ToxiproxyError

pytestmark = pytest.mark.integration


def test_version_is_v2_12(toxiproxy_client: Toxiproxy) -> None:
    """The server is the real Toxiproxy at the pinned version."""
    assert toxiproxy_client.version().lstrip("v").startswith("2.12")


def test_proxy_crud(toxiproxy_client: Toxiproxy, stormproof_stack: Stack) -> None:
    """Create, read, patch (disable, upstream), list and delete a proxy."""
    upstream = stormproof_stack.redis_proxy.upstream
    spec = ProxySpec("scratch", f"127.0.0.1:{free_port()}", upstream)
    created = toxiproxy_client.create_proxy(spec)
    try:
        assert created.enabled and created.upstream == upstream
        assert "scratch" in toxiproxy_client.proxies()
        assert created.disable().enabled is False
        assert created.refresh().enabled is False
        assert created.enable().enabled is True
    finally:
        created.delete()
    assert "scratch" not in toxiproxy_client.proxies()


def test_toxic_add_update_remove(stormproof_stack: Stack) -> None:
    """A toxic is added, PATCHed in place (attributes, toxicity) and removed."""
    proxy = stormproof_stack.redis_proxy
    toxic = proxy.add_toxic("latency", {"latency": 100, "jitter": 10}, name="lat")
    assert toxic.attributes["latency"] == 100
    updated = proxy.update_toxic("lat", {"latency": 250}, toxicity=0.5)
    assert updated.attributes["latency"] == 250
    assert updated.toxicity == 0.5
    assert [t.name for t in proxy.toxics()] == ["lat"]
    proxy.remove_toxic("lat")
    assert proxy.toxics() == []


def test_context_managers_revert_even_on_error(stormproof_stack: Stack) -> None:
    """`down()` and `toxic()` revert when the block raises."""
    proxy = stormproof_stack.postgres_proxy
    with pytest.raises(RuntimeError), proxy.down():
        assert proxy.refresh().enabled is False
        raise RuntimeError("boom")
    assert proxy.refresh().enabled is True
    with pytest.raises(RuntimeError), proxy.toxic("bandwidth", rate=0):
        assert len(proxy.toxics()) == 1
        raise RuntimeError("boom")
    assert proxy.toxics() == []


def test_populate_and_reset(toxiproxy_client: Toxiproxy, stormproof_stack: Stack) -> None:
    """`/populate` creates proxies in one call; `/reset` enables all and drops toxics."""
    upstream = stormproof_stack.redis_proxy.upstream
    [made] = toxiproxy_client.populate([ProxySpec("pop", f"127.0.0.1:{free_port()}", upstream)])
    try:
        made.disable()
        made.add_toxic("latency", {"latency": 10})
        toxiproxy_client.reset()
        again = made.refresh()
        assert again.enabled is True
        assert again.toxics() == []
    finally:
        made.delete()


def test_api_errors_say_what_was_asked_and_answered(stormproof_stack: Stack) -> None:
    """A refused request raises ToxiproxyError naming the request and the server's answer."""
    proxy = stormproof_stack.redis_proxy
    with pytest.raises(ToxiproxyError) as info:
        proxy.add_toxic("no_such_toxic", {})
    assert info.value.status == 400
    assert "POST /proxies/redis/toxics" in str(info.value)
    assert "toxic type" in info.value.answer.lower()
    with pytest.raises(ToxiproxyError) as missing:
        stormproof_stack.toxiproxy.proxy("nope")
    assert missing.value.status == 404


def test_unreachable_server_fails_fast() -> None:
    """A server that is not there fails within the client's timeout, as a ToxiproxyError."""
    client = Toxiproxy(f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
    with pytest.raises(ToxiproxyError) as info:
        client.version()
    assert info.value.status is None
    assert "GET /version" in str(info.value)
    client.close()
