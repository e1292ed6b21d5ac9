"""What keeps ``labformer serve`` safe on a network: a Host check against DNS rebinding and an Origin
check against cross-site requests, the standard Jupyter sets for servers that teachers run on a class's
network.

- A request whose ``Host`` header is not one of the server's own names or addresses is answered 403.
  Allowed: ``localhost``, ``127.0.0.1``, ``[::1]``, the ``--host`` the server listens on, the names given
  with ``--allow-host`` (``*`` allows every name), and — when it listens on every interface
  (``0.0.0.0`` or ``::``) — this machine's host names and any IP address the request actually arrived on.
  A rebinding page reaches the server under the attacker's *name*, so the name is what is checked; the
  port is not.
- A state-changing request (any method but GET, HEAD and OPTIONS) that a browser sent from another site —
  its ``Origin`` is not this server's scheme, name and port, or is ``null`` — is answered 403. Requests
  with no ``Origin`` (curl, scripts, the benchmark) are not browsers' cross-site requests and pass.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["LOCAL_NAMES", "WILDCARDS", "HostGuard", "Hosts", "host_name", "is_wildcard"]

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_wildcard(host: str) -> bool:
    """Whether listening on ``host`` means every interface of the machine."""
    return host.strip("[]") in WILDCARDS


def host_name(value: str) -> str:
    """The name part of a ``Host`` header or ``--host`` value, lower case, without port, brackets or
    final dot: "LocalHost:8000" -> "localhost", "[::1]:8000" -> "::1"."""
    value = value.strip().lower()
    if value.startswith("["):  # [IPv6]:port
        return value[1:].split("]", 1)[0]
    if value.count(":") > 1:  # a bare IPv6 address (no port can be told apart)
        return value
    return value.split(":", 1)[0].rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Hosts:
    """The names a request's ``Host`` may carry (see the module's docstring)."""

    names: frozenset[str] = LOCAL_NAMES
    any_name: bool = False  # --allow-host '*'
    own_addresses: bool = False  # listening on every interface: the address a request arrived on is ours

    @classmethod
    def for_server(cls, host: str = "127.0.0.1", allow: Iterable[str] = ()) -> Hosts:
        """The names allowed for a server listening on ``host``, plus the ``--allow-host`` names ``allow``."""
        allow = [host_name(name) for name in allow]
        names = set(LOCAL_NAMES) | {name for name in allow if name != "*"}
        wildcard = is_wildcard(host)
        if wildcard:
            names |= machine_names()
        else:
            names.add(host_name(host))
        return cls(frozenset(names), any_name="*" in allow, own_addresses=wildcard)

    def allows(self, header: str, arrived_on: str | None) -> bool:
        """Whether a request with ``Host: header``, received on the local address ``arrived_on``, is for us."""
        name = host_name(header)
        if not name:
            return False
        if self.any_name or name in self.names:
            return True
        return self.own_addresses and arrived_on is not None and _is_ip(name) and name == host_name(arrived_on)


def machine_names() -> set[str]:
    """This machine's host names (short, fully qualified, ``.local``) and the addresses they resolve to."""
    names = {socket.gethostname().lower()}
    with contextlib.suppress(OSError):
        names.add(socket.getfqdn().lower())
    names |= {f"{name.split('.')[0]}.local" for name in list(names)}
    for name in list(names):
        try:
            names |= {info[4][0].lower() for info in socket.getaddrinfo(name, None)}
        except OSError:
            continue
    return {name for name in names if name}


def _origin(value: str) -> tuple[str, str, int | None] | None:
    """("http", "localhost", 8000) from "http://localhost:8000"; None for "null" or garbage."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def _own_origin(scheme: str, host_header: str) -> tuple[str, str, int]:
    """The origin a page of this server has when the browser reached it with ``Host: host_header``."""
    parsed = urlsplit(f"{scheme}://{host_header}")
    try:
        port = parsed.port
    except ValueError:
        port = None
    return scheme, (parsed.hostname or "").lower(), port or (443 if scheme == "https" else 80)


@dataclass
class HostGuard:
    """ASGI middleware: 403 for a foreign ``Host`` and for a cross-site state-changing request.

    Counts what it refused (``refused["host"]``, ``refused["origin"]``) so the server can report it.
    """

    app: Any
    hosts: Hosts = field(default_factory=Hosts)
    refused: dict[str, int] = field(default_factory=lambda: {"host": 0, "origin": 0})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # lifespan events: no request to check
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        host = headers.get("host", "")
        server = scope.get("server")
        if not self.hosts.allows(host, server[0] if server else None):
            self.refused["host"] += 1
            message = (
                f"this server does not answer to the name {host_name(host) or '(none)'!r} (Host header); "
                "open it as localhost or by its own address, or start labformer serve with --allow-host NAME"
            )
            await _refuse(send, message)
            return
        origin = headers.get("origin")
        if scope["method"] not in SAFE_METHODS and origin is not None:
            own = _own_origin(scope.get("scheme", "http"), host)
            if _origin(origin) != own:
                self.refused["origin"] += 1
                await _refuse(send, f"a {scope['method']} from another site ({origin}) is refused")
                return
        await self.app(scope, receive, send)


async def _refuse(send: Any, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
