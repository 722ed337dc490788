"""Every example runs, and does what its docstring says."""

import runpy
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs(path: Path, tmp_path: Path) -> None:
    module = runpy.run_path(str(path))
    result = module["main"](tmp_path)
    assert result and all(isinstance(v, int) for v in result.values())
    if path.stem == "senior_transit_card":
        assert result["issued"] > 0 and result["home"] > 0 and result["second"] == 0
    if path.stem == "service_hall_backend":
        assert result["stored"] == 1 and result["locked"] >= 5 and result["identified"] == 1
        assert result["promoted"] == 1
    if path.stem == "reconciliation_job":
        assert result["proposals"] > 0 and result["open_tasks"] > 0


def test_there_are_examples() -> None:
    assert len(EXAMPLES) == 3


def test_the_hall_package_starts(tmp_path: Path) -> None:
    """`python -m examples.hall` (the service-hall backend) parses its command line."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "examples.hall", "--help"]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "seed" in done.stdout and "serve" in done.stdout
