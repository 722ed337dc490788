"""The `govdb` command line: each command parses, calls one library function and renders.

A GovdbError becomes one red line on stderr and a non-zero exit, without a traceback.
"""

from __future__ import annotations

from govdb.cli.commands import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
