"""hack/check_tiers.py fails a run in which a tier ran nothing: all its tests skipped, or (for a
required tier) no test at all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from check_tiers import main, problems


def _pytest_report(tmp_path: Path, files: dict[str, str]) -> Path:
    """A real pytest JUnit report of a throw-away tree of test files."""
    for name, body in files.items():
        path = tmp_path / "tree" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    report = tmp_path / "report.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         "--rootdir", str(tmp_path / "tree"), f"--junitxml={report}", str(tmp_path / "tree")],
        cwd=tmp_path / "tree",
        capture_output=True,
        check=False,
    )  # fmt: skip
    return report


PASS = "def test_ok():\n    assert True\n"
SKIP = "import pytest\n\ndef test_skipped():\n    pytest.skip('no runtime')\n"


def test_a_tier_whose_tests_all_skip_fails(tmp_path: Path) -> None:
    report = _pytest_report(
        tmp_path,
        {
            "tests/unit/test_a.py": PASS,
            "tests/integration/test_b.py": PASS,
            "tests/node/test_c.py": SKIP,
            "tests/node/test_d.py": SKIP,
        },
    )
    assert problems(report, ["unit", "integration", "node"]) == [
        "tier node: all 2 tests were skipped"
    ]
    assert main([str(report)]) == 1


def test_a_required_tier_without_tests_fails(tmp_path: Path) -> None:
    report = _pytest_report(tmp_path, {"tests/unit/test_a.py": PASS})
    assert problems(report, ["unit", "node"]) == ["tier node: no test ran"]
    assert main([str(report), "--require", "unit"]) == 0


def test_every_tier_running_passes(tmp_path: Path) -> None:
    report = _pytest_report(
        tmp_path,
        {
            "tests/unit/test_a.py": PASS,
            "tests/integration/test_b.py": PASS,
            "tests/node/test_c.py": PASS + SKIP,
            "e2e/test_e.py": PASS,
        },
    )
    assert problems(report, ["unit", "integration", "node", "e2e"]) == []
    assert main([str(report), "--require", "unit,integration,node,e2e"]) == 0
