"""What every entrypoint shares: flags, logging, API configuration, start-up checks, the run loop.

An entrypoint is a parser plus one coroutine::

    def main(argv: Sequence[str] | None = None) -> int:
        parser = build_parser("dynamo-checkpoint-controller", DESCRIPTION, leader_election=True)
        parser.add_argument(...)  # its own flags
        return run(parser, start, argv)

    async def start(opts: CommonOptions, args: argparse.Namespace) -> None:
        api = await load_api_client(opts.kubeconfig)
        ...
        await preflight(client, needs_in(opts.namespaces, RESOURCE, ("list", "watch")))
        await manager.run()

`run` parses the flags, configures logging (JSON lines when stderr is not a terminal, text when
it is, or as `--log-format` says), runs `start` on uvloop when it is installed, and turns the
errors an operator can fix into one line on stderr and exit status 1, without a traceback:
`StartupError` (no kubeconfig, API server unreachable, CRDs not installed, RBAC missing, a bind
address taken), the manager's cache-sync timeout and a lost leader lease.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import aiohttp
import anyio
import attrs
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from dynamo_snapshot.api.schema import is_dns_label
from dynamo_snapshot.runtime.cache import CacheSyncTimeout
from dynamo_snapshot.runtime.client import Client
from dynamo_snapshot.runtime.errors import ApiError, Forbidden, NotFound
from dynamo_snapshot.runtime.leaderelection import LeaderElectionLost
from dynamo_snapshot.runtime.manager import Manager, ManagerOptions, parse_bind_address
from dynamo_snapshot.runtime.resource import LEASES, Resource

__all__ = [
    "CommonOptions",
    "Need",
    "StartupError",
    "build_parser",
    "leader_election_needs",
    "load_api_client",
    "manager_options",
    "needs_in",
    "parse_namespaces",
    "preflight",
    "run",
    "setup_logging",
]

log = logging.getLogger("dynamo_snapshot.cmd")

SERVICE_ACCOUNT_NAMESPACE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
SELF_SUBJECT_ACCESS_REVIEWS: Final = Resource(
    "authorization.k8s.io",
    "v1",
    "selfsubjectaccessreviews",
    "SelfSubjectAccessReview",
    namespaced=False,
)
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
LOG_FORMATS: Final = ("auto", "json", "text")


class StartupError(Exception):
    """A condition an operator must fix before the binary can work; the message is one line."""


def parse_namespaces(values: Iterable[str] | None) -> tuple[str, ...]:
    """``--namespace`` values (each may hold several names separated by commas) as a sorted
    tuple of distinct names; empty means all namespaces. A name the API server would reject
    raises :class:`StartupError`."""
    names: set[str] = set()
    for value in values or ():
        for part in value.split(","):
            name = part.strip()
            if not name:
                continue
            if not is_dns_label(name):  # what the API server accepts as a namespace name
                raise StartupError(
                    f"--namespace: {name!r} is not a namespace name (lowercase letters, digits "
                    "and '-', at most 63)"
                )
            names.add(name)
    return tuple(sorted(names))


@attrs.frozen
class CommonOptions:
    """The flags every binary takes (SPEC §7), parsed."""

    kubeconfig: str | None
    metrics_bind_address: str
    health_probe_bind_address: str
    log_level: str
    log_format: str
    namespaces: tuple[str, ...] = ()
    """The namespaces to watch, sorted; empty watches all namespaces."""
    leader_elect: bool = False
    leader_election_id: str = ""
    leader_election_namespace: str = "default"


def _default_leader_namespace() -> str:
    """The pod's own namespace in a cluster (where the Role for the Lease lives)."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def build_parser(
    prog: str,
    description: str,
    *,
    leader_election: bool,
    default_leader_election_id: str = "",
) -> argparse.ArgumentParser:
    """A parser with the common flags; the entrypoint adds its own before calling `run`."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    conn = parser.add_argument_group("connection")
    conn.add_argument(
        "--kubeconfig",
        metavar="PATH",
        default=None,
        help="kubeconfig to use. Default: $KUBECONFIG, else the in-cluster ServiceAccount "
        "when running in a pod, else ~/.kube/config.",
    )
    conn.add_argument(
        "--namespace",
        metavar="NS[,NS...]",
        action="append",
        default=None,
        help="watch only these namespaces: repeat the flag or separate names with commas "
        "(--namespace a,b). Each is listed and watched on its own, so Roles in those "
        "namespaces suffice (no cluster-wide list or watch); cluster-scoped kinds are still "
        "watched cluster-wide, and the leader-election Lease keeps its own namespace. Default: "
        "$WATCH_NAMESPACE (same form), else all namespaces.",
    )
    serve = parser.add_argument_group("serving")
    serve.add_argument(
        "--metrics-bind-address",
        metavar="ADDR",
        default=":8080",
        help="host:port of the Prometheus /metrics endpoint; '0' disables it (default :8080).",
    )
    serve.add_argument(
        "--health-probe-bind-address",
        metavar="ADDR",
        default=":8081",
        help="host:port of /healthz and /readyz; '0' disables them (default :8081).",
    )
    if leader_election:
        le = parser.add_argument_group("leader election")
        le.add_argument(
            "--leader-elect",
            action="store_true",
            help="run as one of several replicas: only the holder of a Lease reconciles; the "
            "others wait and take over within about 15 s when it goes away.",
        )
        le.add_argument(
            "--leader-election-id",
            metavar="NAME",
            default=default_leader_election_id,
            help=f"name of that Lease (default {default_leader_election_id}).",
        )
        le.add_argument(
            "--leader-election-namespace",
            metavar="NS",
            default=None,
            help="namespace of that Lease (default: $POD_NAMESPACE, else the pod's own "
            "namespace, else 'default').",
        )
    logs = parser.add_argument_group("logging")
    logs.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=os.environ.get("LOG_LEVEL", "info").lower(),
        help="least severe level logged (default: $LOG_LEVEL, else info).",
    )
    logs.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="auto",
        help="json: one JSON object a line; text: for people; auto (default): text on a "
        "terminal, JSON otherwise.",
    )
    return parser


def options_from(args: argparse.Namespace) -> CommonOptions:
    for flag in ("metrics_bind_address", "health_probe_bind_address"):
        value = getattr(args, flag)
        try:
            parse_bind_address(value)
        except ValueError as err:
            raise StartupError(f"--{flag.replace('_', '-')}: {err}") from None
    leader_elect = bool(getattr(args, "leader_elect", False))
    leader_id = str(getattr(args, "leader_election_id", "") or "")
    if leader_elect and not leader_id:
        raise StartupError("--leader-elect needs --leader-election-id (the Lease name)")
    return CommonOptions(
        kubeconfig=args.kubeconfig,
        metrics_bind_address=args.metrics_bind_address,
        health_probe_bind_address=args.health_probe_bind_address,
        log_level=args.log_level,
        log_format=args.log_format,
        namespaces=parse_namespaces(
            args.namespace
            if args.namespace is not None
            else [os.environ.get("WATCH_NAMESPACE", "")]
        ),
        leader_elect=leader_elect,
        leader_election_id=leader_id,
        leader_election_namespace=(
            getattr(args, "leader_election_namespace", None) or _default_leader_namespace()
        ),
    )


# --- logging -------------------------------------------------------------------------------

# Attributes every LogRecord has; anything else was passed in `extra=` and is logged as a field.
_RECORD_ATTRS: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, `extra=` fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str, fmt: str, stream: Any = None) -> None:
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log and kubernetes_asyncio's debug chatter are not ours to show.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


# --- API configuration ---------------------------------------------------------------------


def _is_file(path: str) -> bool:
    # Start-up only, before anything else runs on the loop: a stat cannot stall work.
    return os.path.isfile(os.path.expanduser(path))


async def load_api_client(kubeconfig: str | None) -> Any:
    """A kubernetes_asyncio ApiClient from --kubeconfig, $KUBECONFIG, in-cluster or ~/.kube."""
    cfg = k8s_client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    try:
        if path:
            if not _is_file(path):
                raise StartupError(f"kubeconfig {path} does not exist")
            await k8s_config.load_kube_config(
                config_file=path, client_configuration=cfg, persist_config=False
            )
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        elif _is_file("~/.kube/config"):
            await k8s_config.load_kube_config(client_configuration=cfg, persist_config=False)
        else:
            raise StartupError(
                "no kubeconfig: pass --kubeconfig, set KUBECONFIG, or run in a pod with a "
                "ServiceAccount"
            )
    except StartupError:
        raise
    except Exception as err:
        where = path or "in-cluster configuration"
        raise StartupError(f"cannot load {where}: {_one_line(err)}") from None
    return k8s_client.ApiClient(configuration=cfg)


def needs_in(
    namespaces: Sequence[str],
    resource: Resource,
    verbs: tuple[str, ...],
    *,
    subresource: str | None = None,
    custom: bool = False,
) -> list[Need]:
    """The same verbs in each of ``namespaces`` (cluster-wide when there are none)."""
    return [
        Need(resource, verbs, ns, subresource=subresource, custom=custom)
        for ns in (namespaces or (None,))
    ]


@attrs.frozen
class Need:
    """Verbs a binary needs on a resource (in `namespace`, or cluster-wide when None)."""

    resource: Resource
    verbs: tuple[str, ...]
    namespace: str | None = None
    subresource: str | None = None
    custom: bool = False
    """A resource of our CRDs: a missing one means the CRDs are not installed."""


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:300]


_API_FAILURES: Final = (ApiError, OSError, aiohttp.ClientError, TimeoutError)


def _api_failure(host: str, err: BaseException) -> StartupError:
    """The one-line start-up error for a request the API server refused or never answered."""
    if isinstance(err, ApiError):
        if err.status == 401:
            return StartupError(f"the API server at {host} refused our credentials: {err.message}")
        return StartupError(f"API server at {host}: {_one_line(err)}")
    return StartupError(f"cannot reach the API server at {host}: {_one_line(err)}")


async def preflight(client: Client, needs: Iterable[Need]) -> None:
    """Fail fast, in one line, when the binary cannot work: API server unreachable or refusing
    our credentials, a CRD not installed, or RBAC missing a verb. Costs one request per custom
    resource and one SelfSubjectAccessReview per verb."""
    needs = list(needs)
    checked: set[Resource] = set()
    for need in needs:
        if not need.custom or need.resource in checked:
            continue  # one request per CRD, however many namespaces need it
        checked.add(need.resource)
        try:
            await client.list(need.resource, need.namespace, limit=1)
        except NotFound:
            raise StartupError(
                f"CRD {need.resource.group_resource} is not installed "
                "(apply manifests/crds: kubectl apply --server-side -k manifests/crds)"
            ) from None
        except Forbidden:
            pass  # reported below, with every other missing verb
        except _API_FAILURES as err:
            raise _api_failure(client.host, err) from None
    missing: list[str] = []
    for need in needs:
        for verb in need.verbs:
            attrs_: dict[str, Any] = {
                "group": need.resource.group,
                "resource": need.resource.plural,
                "verb": verb,
            }
            if need.subresource:
                attrs_["subresource"] = need.subresource
            if need.namespace and need.resource.namespaced:
                attrs_["namespace"] = need.namespace
            try:
                review = await client.create(
                    SELF_SUBJECT_ACCESS_REVIEWS,
                    {
                        "apiVersion": "authorization.k8s.io/v1",
                        "kind": "SelfSubjectAccessReview",
                        "spec": {"resourceAttributes": attrs_},
                    },
                )
            except _API_FAILURES as err:
                raise _api_failure(client.host, err) from None
            if not (review.get("status") or {}).get("allowed"):
                what = need.resource.group_resource
                if need.subresource:
                    what = f"{need.resource.plural}/{need.subresource}"
                    if need.resource.group:
                        what += f".{need.resource.group}"
                where = (
                    f"in namespace {need.namespace}" if attrs_.get("namespace") else "cluster-wide"
                )
                missing.append(f"{verb} {what} {where}")
    if missing:
        raise StartupError("RBAC: this identity cannot " + "; cannot ".join(missing))


def leader_election_needs(opts: CommonOptions) -> list[Need]:
    """With --leader-elect: the Lease verbs, in the Lease's namespace."""
    if not opts.leader_elect:
        return []
    return [Need(LEASES, ("get", "create", "update"), opts.leader_election_namespace)]


def manager_options(opts: CommonOptions, service_name: str) -> ManagerOptions:
    return ManagerOptions(
        metrics_bind_address=opts.metrics_bind_address,
        health_probe_bind_address=opts.health_probe_bind_address,
        leader_election=opts.leader_elect,
        leader_election_id=opts.leader_election_id,
        leader_election_namespace=opts.leader_election_namespace,
        namespaces=opts.namespaces,
        service_name=service_name,
    )


# --- running -------------------------------------------------------------------------------

Wire = Callable[[Manager, CommonOptions, argparse.Namespace], object]


async def run_controller(
    opts: CommonOptions, args: argparse.Namespace, prog: str, needs: Iterable[Need], wire: Wire
) -> None:
    """A cluster controller's life: connect, check access (the leader-election Lease's too), wire
    the controller into a manager and run it until a signal; the API client is closed on exit."""
    api = await load_api_client(opts.kubeconfig)
    try:
        mgr = Manager(api, manager_options(opts, prog), field_manager=prog)
        await preflight(mgr.live, [*leader_election_needs(opts), *needs])
        wire(mgr, opts, args)
        await mgr.run()
    finally:
        await api.close()


Start = Callable[[CommonOptions, argparse.Namespace], Awaitable[None]]


def _backend_options() -> dict[str, Any]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


def run(parser: argparse.ArgumentParser, start: Start, argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, set up logging, run `start`; the exit status (see the module docstring)."""
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        opts = options_from(args)
    except StartupError as err:
        parser.error(str(err))  # exits 2, with the usage line
    setup_logging(opts.log_level, opts.log_format)
    try:
        anyio.run(start, opts, args, backend="asyncio", backend_options=_backend_options())
    except StartupError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    except CacheSyncTimeout as err:
        print(f"{prog}: error: {_one_line(err)} (is RBAC missing a list/watch?)", file=sys.stderr)
        return 1
    except LeaderElectionLost as err:
        print(f"{prog}: error: {_one_line(err)}; exiting to rejoin as a follower", file=sys.stderr)
        return 1
    except OSError as err:
        # A bind address in use, most often.
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
