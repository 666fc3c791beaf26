"""A small typed asyncio client for a container runtime's CRI ``runtime.v1`` gRPC socket.

The node agent uses it to resolve a container (ID, state, host PID) and to ask the runtime for a
checkpoint; the node tests use it to run pods the way a kubelet would. Messages are the generated
protobuf classes of our CRI subset (``runtime.proto``), re-exported here as ``pb``.

Every call has a gRPC deadline (the client's default, or the call's ``timeout``): the runtime is a
local daemon, and a hung call must fail rather than block a worker for ever. That matters most for
``CheckpointContainer``: containerd 2.1 ignores the request's own ``timeout`` field, so the gRPC
deadline is what bounds it.

gRPC failures are raised as ``CriError`` (with ``CriUnimplemented``, ``CriNotFound`` and
``CriDeadlineExceeded`` for the codes callers branch on: UNIMPLEMENTED is how containerd < 2.0
says it cannot checkpoint, which sends the agent to its CRIU fallback).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import grpc
import grpc.aio

from dynamo_snapshot.agent.cri.generated import runtime_pb2 as pb
from dynamo_snapshot.agent.cri.generated import runtime_pb2_grpc as pb_grpc

__all__ = [
    "CriClient",
    "CriDeadlineExceeded",
    "CriError",
    "CriNotFound",
    "CriUnimplemented",
    "ExecResult",
    "pb",
]

DEFAULT_TIMEOUT_S: Final = 30.0
# ExecSync output is capped at 16 MiB per stream by the runtime; leave room for both plus framing.
_MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024


class CriError(Exception):
    """A CRI call failed. ``code`` is the gRPC status code, ``method`` the RPC name."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"CRI {method}: {code.name}: {details}")
        self.method = method
        self.code = code
        self.details = details


class CriUnimplemented(CriError):
    """The runtime does not implement the call (e.g. CheckpointContainer before containerd 2.0)."""


class CriNotFound(CriError):
    """The container or sandbox does not exist (any more)."""


class CriDeadlineExceeded(CriError):
    """The call did not finish before its deadline."""


_ERRORS: Final[Mapping[grpc.StatusCode, type[CriError]]] = {
    grpc.StatusCode.UNIMPLEMENTED: CriUnimplemented,
    grpc.StatusCode.NOT_FOUND: CriNotFound,
    grpc.StatusCode.DEADLINE_EXCEEDED: CriDeadlineExceeded,
}


def _error(method: str, err: grpc.aio.AioRpcError) -> CriError:
    code: grpc.StatusCode = err.code()
    details: str = err.details() or ""
    return _ERRORS.get(code, CriError)(method, code, details)


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


def endpoint_target(endpoint: str) -> str:
    """gRPC target of a runtime endpoint given as a socket path or a ``unix://`` URI."""
    if endpoint.startswith("unix://"):
        return endpoint
    if endpoint.startswith("/"):
        return "unix://" + endpoint
    raise ValueError(f"CRI endpoint must be an absolute socket path or unix:// URI: {endpoint!r}")


class CriClient:
    """Runtime service calls over one gRPC channel. Use as ``async with CriClient(path) as cri``."""

    def __init__(self, endpoint: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(
            endpoint_target(endpoint),
            options=[
                ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            ],
        )
        self._runtime = pb_grpc.RuntimeServiceStub(self._channel)
        self._images = pb_grpc.ImageServiceStub(self._channel)

    async def __aenter__(self) -> CriClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, stub: Any, method: str, request: Any, timeout: float | None) -> Any:
        deadline_s = self.timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            return await getattr(stub, method)(request, timeout=deadline_s)
        except grpc.aio.AioRpcError as err:
            # The server learns the deadline too (grpc-timeout) and may reset the stream first:
            # the client then sees CANCELLED, which at the deadline means the deadline.
            if err.code() == grpc.StatusCode.CANCELLED and time.monotonic() - started >= deadline_s:
                raise CriDeadlineExceeded(
                    method, grpc.StatusCode.DEADLINE_EXCEEDED, err.details() or ""
                ) from err
            raise _error(method, err) from err

    # ---- runtime ----

    async def version(self, *, timeout: float | None = None) -> pb.VersionResponse:
        resp: pb.VersionResponse = await self._call(
            self._runtime, "Version", pb.VersionRequest(version="v1"), timeout
        )
        return resp

    # ---- pod sandboxes ----

    async def run_pod_sandbox(
        self,
        config: pb.PodSandboxConfig,
        *,
        runtime_handler: str = "",
        timeout: float | None = None,
    ) -> str:
        """Create and start a sandbox; returns its ID."""
        req = pb.RunPodSandboxRequest(config=config, runtime_handler=runtime_handler)
        resp: pb.RunPodSandboxResponse = await self._call(
            self._runtime, "RunPodSandbox", req, timeout
        )
        return resp.pod_sandbox_id

    async def stop_pod_sandbox(self, sandbox_id: str, *, timeout: float | None = None) -> None:
        req = pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id)
        await self._call(self._runtime, "StopPodSandbox", req, timeout)

    async def remove_pod_sandbox(self, sandbox_id: str, *, timeout: float | None = None) -> None:
        req = pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id)
        await self._call(self._runtime, "RemovePodSandbox", req, timeout)

    async def list_pod_sandboxes(
        self, *, label_selector: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> list[pb.PodSandbox]:
        req = pb.ListPodSandboxRequest(
            filter=pb.PodSandboxFilter(label_selector=dict(label_selector or {}))
        )
        resp: pb.ListPodSandboxResponse = await self._call(
            self._runtime, "ListPodSandbox", req, timeout
        )
        return list(resp.items)

    # ---- containers ----

    async def create_container(
        self,
        sandbox_id: str,
        config: pb.ContainerConfig,
        sandbox_config: pb.PodSandboxConfig,
        *,
        timeout: float | None = None,
    ) -> str:
        """Create a container in the sandbox; returns its ID."""
        req = pb.CreateContainerRequest(
            pod_sandbox_id=sandbox_id, config=config, sandbox_config=sandbox_config
        )
        resp: pb.CreateContainerResponse = await self._call(
            self._runtime, "CreateContainer", req, timeout
        )
        return resp.container_id

    async def start_container(self, container_id: str, *, timeout: float | None = None) -> None:
        req = pb.StartContainerRequest(container_id=container_id)
        await self._call(self._runtime, "StartContainer", req, timeout)

    async def stop_container(
        self, container_id: str, *, grace_period_s: int = 0, timeout: float | None = None
    ) -> None:
        """SIGTERM (the image's stop signal), then SIGKILL after the grace period."""
        req = pb.StopContainerRequest(container_id=container_id, timeout=grace_period_s)
        if timeout is None:
            timeout = self.timeout + grace_period_s
        await self._call(self._runtime, "StopContainer", req, timeout)

    async def remove_container(self, container_id: str, *, timeout: float | None = None) -> None:
        req = pb.RemoveContainerRequest(container_id=container_id)
        await self._call(self._runtime, "RemoveContainer", req, timeout)

    async def container_status(
        self, container_id: str, *, verbose: bool = False, timeout: float | None = None
    ) -> pb.ContainerStatusResponse:
        req = pb.ContainerStatusRequest(container_id=container_id, verbose=verbose)
        resp: pb.ContainerStatusResponse = await self._call(
            self._runtime, "ContainerStatus", req, timeout
        )
        return resp

    async def container_pid(self, container_id: str, *, timeout: float | None = None) -> int:
        """Host PID of the container's init process, from the verbose status.

        containerd (and CRI-O) put a JSON object under ``info["info"]`` whose ``pid`` is the
        init process as seen from the host; 0 when the container is not running.
        """
        resp = await self.container_status(container_id, verbose=True, timeout=timeout)
        raw = resp.info.get("info")
        if raw is None:
            raise CriError("ContainerStatus", grpc.StatusCode.UNKNOWN, "verbose info has no 'info'")
        pid = json.loads(raw).get("pid", 0)
        if not isinstance(pid, int):
            raise CriError("ContainerStatus", grpc.StatusCode.UNKNOWN, f"bad pid {pid!r} in info")
        return pid

    async def list_containers(
        self,
        *,
        sandbox_id: str = "",
        state: pb.ContainerState.ValueType | None = None,
        label_selector: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> list[pb.Container]:
        flt = pb.ContainerFilter(
            pod_sandbox_id=sandbox_id, label_selector=dict(label_selector or {})
        )
        if state is not None:
            flt.state.CopyFrom(pb.ContainerStateValue(state=state))
        resp: pb.ListContainersResponse = await self._call(
            self._runtime, "ListContainers", pb.ListContainersRequest(filter=flt), timeout
        )
        return list(resp.containers)

    async def exec_sync(
        self, container_id: str, cmd: Sequence[str], *, timeout_s: int = 10
    ) -> ExecResult:
        """Run a command in the container and wait for it (at most ``timeout_s`` seconds)."""
        req = pb.ExecSyncRequest(container_id=container_id, cmd=list(cmd), timeout=timeout_s)
        # The runtime kills the command after timeout_s; give the reply a little longer to arrive.
        resp: pb.ExecSyncResponse = await self._call(
            self._runtime, "ExecSync", req, timeout_s + self.timeout
        )
        return ExecResult(exit_code=resp.exit_code, stdout=resp.stdout, stderr=resp.stderr)

    async def checkpoint_container(
        self, container_id: str, location: str, *, timeout: float
    ) -> None:
        """Checkpoint a running container into the archive ``location`` (a fresh path).

        ``timeout`` (seconds) is both the request's field and the gRPC deadline; the deadline is
        what counts with containerd 2.1, which ignores the field. containerd also overwrites an
        existing file at ``location`` without truncating it, so callers must pass a new path.

        On ``CriDeadlineExceeded`` containerd 2.1.9 abandons the checkpoint but leaves the
        container paused (cgroup freezer FROZEN) until it is killed: a caller that gives up must
        kill the container (or resume it) itself.
        """
        req = pb.CheckpointContainerRequest(
            container_id=container_id, location=location, timeout=max(1, math.ceil(timeout))
        )
        await self._call(self._runtime, "CheckpointContainer", req, timeout)

    # ---- images ----

    async def image_status(self, image: str, *, timeout: float | None = None) -> pb.Image | None:
        """The image if the runtime has it (by reference or ID), else None."""
        req = pb.ImageStatusRequest(image=pb.ImageSpec(image=image))
        resp: pb.ImageStatusResponse = await self._call(self._images, "ImageStatus", req, timeout)
        return resp.image if resp.HasField("image") else None
