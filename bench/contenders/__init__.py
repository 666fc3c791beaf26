"""The controllers that bench/latency.py runs one at a time against the same BenchObjects.

Every contender is a process started as ``python -m bench.contenders.NAME`` (or the Go binary
``crlatency``) with the same flags: ``--kubeconfig``, ``--namespace``, ``--expect N``, ``--out
FILE`` and ``--workers``. At the start of each reconcile it records ``(spec.stamp, now)``, prints
``READY`` once it has reconciled ``N`` distinct objects (the initial list is drained), and on
SIGTERM writes ``{"records": [[stamp, start], ...]}`` to ``--out`` and exits.
"""
