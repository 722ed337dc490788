"""The house stays in order: govdb's modules form layers along the data's path, and no module
imports one of a higher layer (imports inside functions count too).

Each module belongs to the group of the longest entry of LAYERS that names it or a package
above it. A module may import its own group and any group of a lower layer; two groups on the
same layer are peers and may not import each other. A new module falls under its package's
entry; a new top-level module or subpackage must be placed in the table.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "govdb"

# (group, layer), lowest first. A group is a module or a package with everything under it.
LAYERS: dict[str, int] = {
    "govdb.base": 0,  # the clock, Actor and ResolvedActor: shared by every stage
    "govdb.errors": 1,
    # A second interpreter for a bulk job's other core (process's linking, promote's planning):
    # it raises govdb's errors, so it sits above them.
    "govdb.base.second_process": 2,
    "govdb.readers": 2,  # file reading (delimited, JSON Lines, Excel, Parquet) for every file stage
    "govdb.rulebook": 3,  # rules as data, and the declared vocabulary of building blocks
    "govdb.standards": 3,  # data elements (peer of rulebook: neither knows the other)
    "govdb.store": 4,  # engines, states, bulk writes, locks, append-only triggers
    "govdb.store.master": 5,  # the two stores' tables: peers, never one importing the other
    "govdb.store.events": 5,
    "govdb.store.feed": 6,  # the master change feed (numbers changes under the head's lock)
    "govdb.store.counts": 6,  # row counts of both stores' tables, for reports
    "govdb.ingest": 6,
    "govdb.validate": 7,
    "govdb.load": 8,  # authoritative bulk loads into master
    "govdb.link": 8,
    "govdb.analytics": 8,  # event store only (never store.master: invariant 7), aggregates only
    "govdb.verify": 9,
    "govdb.promote": 10,
    "govdb.access": 10,
    "govdb.serve": 11,
    "govdb.correct": 11,  # after promotion: conflicts resolved (比对), promotions reverted, merges split
    "govdb.api": 12,
    "govdb": 13,  # the package itself (__init__.py: the public names); no module below it
    "govdb.demo": 13,
    "govdb.cli": 14,
}

# (importer, imported) -> why this upward or sideways import is allowed. Keep it empty.
ALLOWED: dict[tuple[str, str], str] = {}

# Not modules of the package: alembic loads migrations/ by path, with both stores' tables.
SKIPPED = ("govdb.store.migrations",)


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        if not name.startswith(SKIPPED):
            found[name] = path
    return found


MODULES = _modules()


def group(module: str) -> str:
    """The LAYERS entry a module belongs to (the root entry `govdb` names only the package)."""
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        if ".".join(parts[:n]) in LAYERS:
            return ".".join(parts[:n])
    if module == "govdb":
        return "govdb"
    raise AssertionError(f"{module} has no layer: add it (or its package) to LAYERS in {__file__}")


def _imported(module: str, path: Path) -> list[tuple[int, str]]:
    """Every govdb module `module` imports, anywhere in the file, with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from govdb import ingest` imports the module govdb.ingest, `from govdb import Actor`
            # the package's name
            out += [
                (node.lineno, f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base)
                for a in node.names
            ]
        elif isinstance(node, ast.Constant) and "." in str(node.value) and node.value in MODULES:
            out.append((node.lineno, node.value))  # a module named in a string: imported by name
    return [(line, name) for line, name in out if name == "govdb" or name.startswith("govdb.")]


def test_every_module_has_a_layer_and_every_layer_a_module() -> None:
    assert len(MODULES) > 60
    groups = {group(m) for m in MODULES}
    assert groups == set(LAYERS), f"stale entries: {set(LAYERS) - groups}"


def test_no_module_imports_a_higher_layer_or_a_peer() -> None:
    wrong = []
    used = set()
    for module, path in MODULES.items():
        mine = group(module)
        for line, target in _imported(module, path):
            theirs = group(target)
            if theirs == mine or LAYERS[theirs] < LAYERS[mine]:
                continue
            if (module, target) in ALLOWED:
                used.add((module, target))
                continue
            rel = path.relative_to(PACKAGE.parent)
            wrong.append(
                f"{rel}:{line}: {module} (layer {LAYERS[mine]}) imports {target} (layer {LAYERS[theirs]})"
            )
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)
    assert used == set(ALLOWED), f"allowed imports no longer made: {set(ALLOWED) - used}"


def test_the_checker_sees_imports_in_functions_relative_and_by_name(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text(
        "import importlib\n"
        "def f():\n"
        "    from govdb import api\n"
        "    from .. import serve\n"
        "    importlib.import_module('govdb.cli')\n"
        "    'a docstring that mentions govdb.verify'\n"
        "from govdb import Actor\n",
        encoding="utf-8",
    )
    found = sorted(name for _, name in _imported("govdb.store.probe", source))
    assert found == ["govdb", "govdb.api", "govdb.cli", "govdb.serve"]
    assert [group(n) for n in ("govdb.store.master", "govdb.store.bulk", "govdb.verify.actors")] == [
        "govdb.store.master",
        "govdb.store",
        "govdb.verify",
    ]
