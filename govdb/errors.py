"""Every error govdb raises on purpose.

GovdbError                   base: catch this to handle any govdb failure
├── ConfigError              a store URL, home folder or option cannot be used
│   └── RulesChangedError    access policies or routes differ from the last applied (`rules apply`)
├── StoreError               a store cannot be reached or written (down, read-only, full, refused)
│   ├── StoreUnavailableError  the database server is down, the database or file does not exist
│   ├── StoreReadOnlyError     the store (its folder, file or database user) cannot be written
│   └── StoreBusyError         another process held the store (a locked SQLite file) too long
├── RuleFileError            one or more rule files are invalid (every problem, with file and field)
├── InputFileError           an input file cannot be read at all (rows that fail go to quarantine)
├── NotFoundError            a person, form, programme, task or unit does not exist
├── StateError               an action does not fit the current state (task already decided, ...)
├── JurisdictionError        an actor decided or read outside their jurisdiction (invariant 5)
├── AccessDeniedError        a department may not read what it asked for (invariant 6)
└── AuditChainError          the audit log was changed after it was written (truncated, rewritten)

Messages say what happened, show the bad value and say how to fix it; the CLI prints them as they
are, so they are written for the person at the terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class GovdbError(Exception):
    """Base of every govdb error."""


class ConfigError(GovdbError):
    """A store URL, home folder or option cannot be used."""


class StoreError(GovdbError):
    """A store cannot be reached or written: the database is down, read-only, full or refused a value."""


class StoreUnavailableError(StoreError):
    """The store cannot be opened: the server is down or refuses the login, the database does not exist."""


class StoreReadOnlyError(StoreError):
    """The store cannot be written: a read-only folder or file, or a database user without write rights."""


class StoreBusyError(StoreError):
    """Another process held the store (a locked SQLite file) longer than govdb waits."""


@dataclass(frozen=True)
class RuleProblem:
    """One problem in one rule file: where (file, dotted field path) and what."""

    file: Path
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else str(self.file)
        return f"{where}: {self.message}"


class RuleFileError(GovdbError):
    """Rule files failed to load; `problems` lists every problem found in one pass."""

    def __init__(self, problems: Sequence[RuleProblem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in rule files:\n{lines}")


class InputFileError(GovdbError):
    """An input file cannot be read at all (missing, unknown format, no header)."""


class NotFoundError(GovdbError):
    """A named thing does not exist."""


class StateError(GovdbError):
    """An action does not fit the current state."""


class JurisdictionError(GovdbError):
    """An actor acted outside their jurisdiction."""


class AccessDeniedError(GovdbError):
    """A department asked for data its access policy does not grant."""


class AuditChainError(GovdbError):
    """The audit log, its head or its checkpoints do not agree: entries were removed or rewritten."""


class RulesChangedError(ConfigError):
    """The rulebook's access policies or routes differ from the ones last applied to these stores."""
