"""The registry of our kubelets records the host before the first node and restores it after the
last one, and hands each node directory its own index. A FAKE /proc/sys (a directory tree) and
stand-in host paths take the place of the real ones: the real host is covered by
tests/node/test_kubelet_lifecycle.py."""

from __future__ import annotations

from pathlib import Path

from nodehost import SYSCTLS, Registry


def _fake_proc_sys(root: Path, value: str) -> Path:
    for key in SYSCTLS:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_text(value + "\n")
    return root


def _sysctls(proc_sys: Path) -> set[str]:
    return {(proc_sys / k).read_text().strip() for k in SYSCTLS}


def test_first_node_records_and_last_node_restores(tmp_path: Path) -> None:
    proc_sys = _fake_proc_sys(tmp_path / "fake-proc-sys", "0")
    created_by_kubelet = tmp_path / "host" / "var-log-containers"
    registry = Registry(tmp_path / "registry", proc_sys, (str(created_by_kubelet),))

    a = registry.allocate(tmp_path / "a")
    b = registry.allocate(tmp_path / "b")
    assert (a, b) == (2, 3)
    assert registry.allocate(tmp_path / "a") == a  # known directory, same index

    # What a kubelet does to the host while nodes run.
    _fake_proc_sys(proc_sys, "1")
    created_by_kubelet.mkdir(parents=True)

    assert registry.release(a) == []
    assert _sysctls(proc_sys) == {"1"}  # another node still runs: nothing restored yet
    assert created_by_kubelet.exists()

    assert registry.release(b) == []
    assert _sysctls(proc_sys) == {"0"}
    assert not created_by_kubelet.exists()
    assert registry.entries() == {}
    assert not registry.host_state_file.exists()


def test_a_freed_index_is_handed_out_again(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry", _fake_proc_sys(tmp_path / "fake", "0"), ())
    first = registry.allocate(tmp_path / "a")
    registry.allocate(tmp_path / "b")
    registry.release(first)
    assert registry.allocate(tmp_path / "c") == first
    assert registry.index_of(tmp_path / "c") == first
