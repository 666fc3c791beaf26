"""HTTP serving for a manager: ``/metrics``, and the ``/healthz`` and ``/readyz`` probes.

Bind addresses are ``host:port`` (``:8080`` for every interface, ``127.0.0.1:0`` for a free port);
``"0"`` disables that server. When the metrics and probe addresses are equal, one server serves
all three paths. A probe answers 200 with ``ok`` when every check passes, else 500 with one
``[+]name ok`` / ``[-]name failed`` line per check (also on 200 with ``?verbose``), as the
apiserver's own probes do. A check that raises counts as failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from aiohttp import web

from .metrics import Metrics

__all__ = ["HealthCheck", "HttpServers", "check_response", "parse_bind_address", "serve_http"]

log = logging.getLogger(__name__)

HealthCheck = Callable[[], bool]


def parse_bind_address(addr: str) -> tuple[str, int] | None:
    """``":8080"`` → ``("0.0.0.0", 8080)``; ``"[::1]:0"`` → ``("::1", 0)``; ``"0"`` → None."""
    addr = addr.strip()
    if addr in ("0", ""):
        return None
    host, sep, port = addr.rpartition(":")
    if not sep:
        raise ValueError(f"bind address {addr!r} is not host:port")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def check_response(checks: Mapping[str, HealthCheck], verbose: bool) -> tuple[int, str]:
    """The status code and body a probe answers for ``checks``."""
    lines, ok = [], True
    for name, check in checks.items():
        try:
            passed = bool(check())
        except Exception:
            passed = False
        ok = ok and passed
        lines.append(f"[{'+' if passed else '-'}]{name} {'ok' if passed else 'failed'}")
    lines.append("ok" if ok else "check failed")
    text = "\n".join(lines) if verbose or not ok else "ok"
    return (200 if ok else 500), text + "\n"


@attrs.define
class HttpServers:
    """The running servers and the addresses they bound (``None``: disabled)."""

    runners: list[web.AppRunner] = attrs.field(factory=list)
    metrics_address: tuple[str, int] | None = None
    health_address: tuple[str, int] | None = None

    async def close(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
        self.runners.clear()


async def serve_http(
    metrics_bind_address: str,
    health_probe_bind_address: str,
    metrics: Metrics,
    healthz: Mapping[str, HealthCheck],
    readyz: Mapping[str, HealthCheck],
) -> HttpServers:
    """Start the servers; a taken port raises ``OSError`` here. Checks added to ``healthz`` /
    ``readyz`` later are seen (the mappings are read on each request)."""
    metrics_at = parse_bind_address(metrics_bind_address)
    health_at = parse_bind_address(health_probe_bind_address)
    apps: dict[tuple[str, int], web.Application] = {}

    async def metrics_handler(request: web.Request) -> web.Response:
        body, content_type = metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    def probe(checks: Mapping[str, HealthCheck]) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            status, text = check_response(checks, "verbose" in request.query)
            return web.Response(status=status, text=text)

        return handler

    if metrics_at is not None:
        apps.setdefault(metrics_at, web.Application()).router.add_get("/metrics", metrics_handler)
    if health_at is not None:
        app = apps.setdefault(health_at, web.Application())
        app.router.add_get("/healthz", probe(healthz))
        app.router.add_get("/readyz", probe(readyz))
    servers = HttpServers()
    try:
        for (host, port), app in apps.items():
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            servers.runners.append(runner)
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound = runner.addresses[0]
            address = (str(bound[0]), int(bound[1]))
            if (host, port) == metrics_at:
                servers.metrics_address = address
            if (host, port) == health_at:
                servers.health_address = address
            log.info("serving http on %s:%d", *address)
    except BaseException:
        await servers.close()
        raise
    return servers
