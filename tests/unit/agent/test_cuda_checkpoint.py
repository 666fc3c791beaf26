"""The GPU step against a stand-in ``cuda-checkpoint`` (no GPU here): a script with the real
tool's command line that answers ``--get-state`` from a list of "CUDA" PIDs and logs every call.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dynamo_snapshot.agent.cuda import CudaCheckpointError, CudaSession

STAND_IN = """#!/bin/sh
# stand-in for NVIDIA's cuda-checkpoint: records calls, knows the CUDA pids listed in $DIR/cuda
dir="$(dirname "$0")"
echo "$*" >>"$dir/calls"
case "$1" in
  --get-state)
    grep -qx "$3" "$dir/cuda" && echo running && exit 0
    echo "not a CUDA process" >&2; exit 1 ;;
  --action) [ -e "$dir/fail-$2" ] && { echo "failed $2" >&2; exit 3; }; exit 0 ;;
esac
exit 2
"""


def _stand_in(tmp_path: Path, cuda_pids: list[int]) -> Path:
    binary = tmp_path / "cuda-checkpoint"
    binary.write_text(STAND_IN)
    binary.chmod(0o755)
    (tmp_path / "cuda").write_text("".join(f"{p}\n" for p in cuda_pids))
    return binary


def _calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "calls").read_text().splitlines()


async def test_locks_and_checkpoints_only_cuda_processes_then_resumes(tmp_path: Path) -> None:
    session = CudaSession(str(_stand_in(tmp_path, [11, 13])), timeout_s=10)
    await session.checkpoint([10, 11, 12, 13])
    assert session.pids == [11, 13]
    await session.resume()
    actions = [c for c in _calls(tmp_path) if c.startswith("--action")]
    assert actions == [
        "--action lock --pid 11",
        "--action lock --pid 13",
        "--action checkpoint --pid 11",
        "--action checkpoint --pid 13",
        "--action restore --pid 13",
        "--action restore --pid 11",
        "--action unlock --pid 13",
        "--action unlock --pid 11",
    ]


async def test_a_failed_checkpoint_is_an_error_naming_the_pid(tmp_path: Path) -> None:
    session = CudaSession(str(_stand_in(tmp_path, [7])), timeout_s=10)
    (tmp_path / "fail-checkpoint").touch()
    with pytest.raises(CudaCheckpointError, match="checkpoint --pid 7"):
        await session.checkpoint([7])


async def test_resume_tries_every_process_even_after_a_failure(tmp_path: Path) -> None:
    session = CudaSession(str(_stand_in(tmp_path, [1, 2])), timeout_s=10)
    await session.checkpoint([1, 2])
    (tmp_path / "fail-restore").touch()
    with pytest.raises(CudaCheckpointError):
        await session.resume()
    assert "--action unlock --pid 1" in _calls(tmp_path)
