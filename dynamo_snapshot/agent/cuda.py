"""The optional GPU step (SPEC §5.3): park CUDA state in host memory before CRIU sees it.

NVIDIA's ``cuda-checkpoint`` works per process: ``--get-state`` tells whether a process uses CUDA
(and in which state), ``--action lock`` stops new CUDA work, ``--action checkpoint`` copies device
memory into the process' host memory and releases the GPU. After a ``--leave-running`` dump the
same processes get ``--action restore`` and ``--action unlock``, so the workload continues.
Processes for which ``--get-state`` fails are not CUDA processes and are left alone.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio


class CudaCheckpointError(Exception):
    pass


@dataclass
class CudaSession:
    """The CUDA processes of one dump, in the order they were checkpointed."""

    binary: str
    timeout_s: float
    pids: list[int] = field(default_factory=list)

    async def _run(self, *args: str) -> tuple[int, str]:
        with anyio.fail_after(self.timeout_s):
            result = await anyio.run_process(
                [self.binary, *args], check=False, stdin=subprocess.DEVNULL
            )
        out = (result.stdout + result.stderr).decode(errors="replace").strip()
        return result.returncode, out

    async def _action(self, action: str, pid: int) -> None:
        rc, out = await self._run("--action", action, "--pid", str(pid))
        if rc != 0:
            raise CudaCheckpointError(f"cuda-checkpoint --action {action} --pid {pid}: {out}")

    async def checkpoint(self, tree: Sequence[int]) -> None:
        """Lock, then checkpoint, every CUDA process of the tree."""
        for pid in tree:
            rc, out = await self._run("--get-state", "--pid", str(pid))
            if rc == 0 and out.strip() == "running":
                self.pids.append(pid)
        for pid in self.pids:
            await self._action("lock", pid)
        for pid in self.pids:
            await self._action("checkpoint", pid)

    async def resume(self) -> None:
        """Give the GPU back (restore, unlock), last checkpointed first; every process is tried
        even when one fails, and the first failure is raised after."""
        first: CudaCheckpointError | None = None
        for action in ("restore", "unlock"):
            for pid in reversed(self.pids):
                try:
                    await self._action(action, pid)
                except CudaCheckpointError as err:
                    first = first or err
        if first:
            raise first
