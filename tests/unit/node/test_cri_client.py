"""The CRI client's own logic: endpoints, error mapping, verbose-status parsing.

The runtime here is ``FakeRuntime``, a gRPC server on a unix socket standing in for containerd
1.6/1.7 (which answer UNIMPLEMENTED to CheckpointContainer: the node tests run containerd 2.1,
which implements it). Everything against a real runtime is in tests/node.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from dynamo_snapshot.agent.cri import client as cri_client
from dynamo_snapshot.agent.cri.client import (
    CriClient,
    CriDeadlineExceeded,
    CriError,
    CriNotFound,
    CriUnimplemented,
    pb,
)
from dynamo_snapshot.agent.cri.generated import runtime_pb2_grpc as pb_grpc


class FakeRuntime(pb_grpc.RuntimeServiceServicer):
    """Stand-in for an old containerd: no CheckpointContainer; one known container."""

    async def Version(self, request: Any, context: Any) -> pb.VersionResponse:
        return pb.VersionResponse(
            version="0.1.0",
            runtime_name="containerd",
            runtime_version="1.7.24",
            runtime_api_version="v1",
        )

    async def ContainerStatus(self, request: Any, context: Any) -> pb.ContainerStatusResponse:
        if request.container_id != "known":
            await context.abort(
                grpc.StatusCode.NOT_FOUND, "an error occurred when try to find container"
            )
        info = {"info": json.dumps({"pid": 4242, "sandboxID": "s"})} if request.verbose else {}
        return pb.ContainerStatusResponse(
            status=pb.ContainerStatus(id="known", state=pb.CONTAINER_RUNNING), info=info
        )

    async def ExecSync(self, request: Any, context: Any) -> pb.ExecSyncResponse:
        await asyncio.sleep(5)  # longer than the deadlines the test gives
        return pb.ExecSyncResponse()

    async def CheckpointContainer(
        self, request: Any, context: Any
    ) -> pb.CheckpointContainerResponse:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "method CheckpointContainer not implemented"
        )
        raise AssertionError("unreachable")


@pytest.fixture
async def fake_runtime(tmp_path: Path) -> AsyncIterator[str]:
    socket = tmp_path / "cri.sock"
    server = grpc.aio.server()
    # Only the RPCs the tests call are implemented; the base class answers UNIMPLEMENTED for the
    # rest, like an old runtime (mypy sees them as abstract).
    pb_grpc.add_RuntimeServiceServicer_to_server(FakeRuntime(), server)  # type: ignore[abstract]
    server.add_insecure_port(f"unix://{socket}")
    await server.start()
    try:
        yield str(socket)
    finally:
        await server.stop(None)


def test_endpoint_accepts_paths_and_unix_uris() -> None:
    assert cri_client.endpoint_target("/run/containerd/containerd.sock") == (
        "unix:///run/containerd/containerd.sock"
    )
    assert cri_client.endpoint_target("unix:///x.sock") == "unix:///x.sock"
    with pytest.raises(ValueError, match="absolute socket path"):
        cri_client.endpoint_target("relative.sock")


async def test_calls_and_error_mapping(fake_runtime: str) -> None:
    async with CriClient(fake_runtime, timeout=5) as cri:
        assert (await cri.version()).runtime_version == "1.7.24"
        assert await cri.container_pid("known") == 4242
        with pytest.raises(CriNotFound) as not_found:
            await cri.container_status("missing")
        assert not_found.value.method == "ContainerStatus"
        with pytest.raises(CriUnimplemented) as unimplemented:
            await cri.checkpoint_container("known", "/tmp/never.tar", timeout=5)
        assert unimplemented.value.code == grpc.StatusCode.UNIMPLEMENTED
        assert isinstance(unimplemented.value, CriError)
        # An RPC the fake does not define at all is UNIMPLEMENTED too.
        with pytest.raises(CriUnimplemented):
            await cri.list_containers()


async def test_deadline_is_reported_as_such(fake_runtime: str) -> None:
    async with CriClient(fake_runtime, timeout=0.2) as cri:
        with pytest.raises(CriDeadlineExceeded):
            await cri.exec_sync("known", ["true"], timeout_s=0)
