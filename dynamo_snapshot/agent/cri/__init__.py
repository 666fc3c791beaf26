"""The container runtime's CRI (``runtime.v1``) as the agent sees it.

``runtime.proto`` declares the subset of the CRI we use (upstream's field numbers, our own file);
``generated/`` holds its stubs (``hack/gen-proto.sh``); ``client.py`` is the typed asyncio client.
"""

from dynamo_snapshot.agent.cri.client import (
    CriClient,
    CriDeadlineExceeded,
    CriError,
    CriNotFound,
    CriUnimplemented,
    ExecResult,
    pb,
)

__all__ = [
    "CriClient",
    "CriDeadlineExceeded",
    "CriError",
    "CriNotFound",
    "CriUnimplemented",
    "ExecResult",
    "pb",
]
