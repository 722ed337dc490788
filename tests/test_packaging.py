import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_for_the_wheel() -> None:
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "govdb").rglob("__init__.py")}
    assert found | {"govdb._rules"} == listed


def test_the_maintainers_builders_stay_out_of_the_package() -> None:
    """The table builders run from a checkout (tools/), never from an installed govdb."""
    assert not list((REPO / "govdb").rglob("*_build.py"))
    assert {p.name for p in (REPO / "tools").glob("*_build.py")} == {"divisions_build.py", "hanzi_build.py"}
    runtime = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in runtime if d.startswith("python-stdnum")]  # only the builders and the tests use it


def test_division_table_ships_with_its_metadata() -> None:
    data = REPO / "govdb" / "standards" / "data"
    assert {p.name for p in data.iterdir()} >= {
        "divisions.parquet",
        "divisions.meta.json",
        "township_crosswalk.parquet",
    }


def _tracked_files() -> list[str]:
    """The files git tracks in the checkout (what a fresh clone holds), or skip without a checkout."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, stdin=subprocess.DEVNULL
    ).stdout
    # A tracked file deleted in the working tree is not there to copy (nor in the next commit's wheel).
    return [name for name in out.decode().split("\0") if name and (REPO / name).is_file()]


def test_the_wheel_holds_every_tracked_file(tmp_path: Path) -> None:
    """Every file git tracks under govdb/ (and rules/, shipped as govdb._rules) is in the wheel.

    The wheel is built from a copy of the tracked files only, as a fresh clone would build it: a
    stale build/ folder or an untracked file in the working tree cannot hide a missing one.
    """
    tracked = _tracked_files()
    src = tmp_path / "src"
    for name in tracked:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    out = tmp_path / "wheel"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(out)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if build.returncode != 0 and "No matching distribution found for setuptools" in build.stderr:
        pytest.skip(f"pip cannot fetch the build backend offline:\n{build.stderr}")
    assert build.returncode == 0, f"pip wheel failed:\n{build.stdout}\n{build.stderr}"
    (wheel,) = out.glob("govdb-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    shipped = {n for n in names if ".dist-info/" not in n and "__pycache__" not in n and not n.endswith("/")}
    expected = {n for n in tracked if n.startswith("govdb/")} | {
        "govdb/_rules/" + n.removeprefix("rules/") for n in tracked if n.startswith("rules/")
    }
    assert sorted(expected - shipped) == [], "tracked but missing from the wheel (see package-data)"
    assert sorted(shipped - expected) == [], "in the wheel but not tracked by git"


@pytest.mark.skipif(
    os.environ.get("GOVDB_TEST_REQUIRE_INSTALLED") != "1",
    reason="GOVDB_TEST_REQUIRE_INSTALLED=1 (set by .ci/run) checks the tests use the installed package",
)
def test_the_tests_import_the_installed_package() -> None:
    """Under .ci/run the tests exercise the installed wheel, as a newcomer gets it, not the checkout."""
    import govdb

    source = (REPO / "govdb").resolve()
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    loaded = {
        name: Path(module.__file__).resolve()
        for name, module in list(sys.modules.items())
        if (name == "govdb" or name.startswith("govdb.")) and getattr(module, "__file__", None)
    }
    assert loaded["govdb"] == Path(govdb.__file__).resolve()
    from_source = sorted(name for name, path in loaded.items() if path.is_relative_to(source))
    assert not from_source, (
        f"{len(from_source)} govdb modules ({', '.join(from_source[:3])}...) were imported from the "
        f"source tree {source}, not the installed package: run .venv/bin/pytest, not python -m pytest"
    )
    elsewhere = {name: str(path) for name, path in loaded.items() if not path.is_relative_to(site)}
    assert not elsewhere, f"govdb modules not imported from {site}: {elsewhere}"
