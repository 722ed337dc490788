"""govdb: verified master data and unverified event data for Chinese local-government service halls.

The public API: open both stores with `open_db`, then ingest -> process -> decide -> promote ->
prefill / run programmes; `GovDB.link_one` finds the master person a record is about, and
`link_frames` / `dedupe_frame` link whole files. Every error govdb raises on purpose is a `GovdbError`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from govdb.access.audit import AuditVerification, ReadRecord
    from govdb.api import DistrictReport, GovDB, ProcessReport, open_db
    from govdb.base import Actor
    from govdb.errors import (
        AccessDeniedError,
        AuditChainError,
        ConfigError,
        GovdbError,
        InputFileError,
        JurisdictionError,
        NotFoundError,
        RuleFileError,
        RulesChangedError,
        StateError,
        StoreBusyError,
        StoreError,
        StoreReadOnlyError,
        StoreUnavailableError,
    )
    from govdb.ingest import IngestReport, QuarantinedRow, VersionedRow
    from govdb.link import DedupeOutput, LinkModel, LinkOutput, LinkResult, dedupe_frame, link_frames
    from govdb.promote import PromoteReport
    from govdb.rulebook import Rulebook, load_rulebook
    from govdb.serve import PrefilledField, PrefillResult, Profile, ProgrammeRun
    from govdb.validate import ValidationReport
    from govdb.verify import DecisionResult, TaskView

# Where each public name lives: imported on first use (PEP 562), so `import govdb.errors`
# or `govdb --help` loads neither polars nor the stores.
_LAZY = {
    "AccessDeniedError": "govdb.errors",
    "Actor": "govdb.base",
    "AuditChainError": "govdb.errors",
    "AuditVerification": "govdb.access.audit",
    "ConfigError": "govdb.errors",
    "DecisionResult": "govdb.verify",
    "DedupeOutput": "govdb.link",
    "DistrictReport": "govdb.api",
    "GovDB": "govdb.api",
    "GovdbError": "govdb.errors",
    "IngestReport": "govdb.ingest",
    "InputFileError": "govdb.errors",
    "JurisdictionError": "govdb.errors",
    "LinkModel": "govdb.link",
    "LinkOutput": "govdb.link",
    "LinkResult": "govdb.link",
    "NotFoundError": "govdb.errors",
    "PrefillResult": "govdb.serve",
    "PrefilledField": "govdb.serve",
    "ProcessReport": "govdb.api",
    "Profile": "govdb.serve",
    "ProgrammeRun": "govdb.serve",
    "PromoteReport": "govdb.promote",
    "QuarantinedRow": "govdb.ingest",
    "ReadRecord": "govdb.access.audit",
    "RuleFileError": "govdb.errors",
    "Rulebook": "govdb.rulebook",
    "RulesChangedError": "govdb.errors",
    "StateError": "govdb.errors",
    "StoreBusyError": "govdb.errors",
    "StoreError": "govdb.errors",
    "StoreReadOnlyError": "govdb.errors",
    "StoreUnavailableError": "govdb.errors",
    "TaskView": "govdb.verify",
    "ValidationReport": "govdb.validate",
    "VersionedRow": "govdb.ingest",
    "dedupe_frame": "govdb.link",
    "link_frames": "govdb.link",
    "load_rulebook": "govdb.rulebook",
    "open_db": "govdb.api",
}

__all__ = [
    "AccessDeniedError",
    "Actor",
    "AuditChainError",
    "AuditVerification",
    "ConfigError",
    "DecisionResult",
    "DedupeOutput",
    "DistrictReport",
    "GovDB",
    "GovdbError",
    "IngestReport",
    "InputFileError",
    "JurisdictionError",
    "LinkModel",
    "LinkOutput",
    "LinkResult",
    "NotFoundError",
    "PrefillResult",
    "PrefilledField",
    "ProcessReport",
    "Profile",
    "ProgrammeRun",
    "PromoteReport",
    "QuarantinedRow",
    "ReadRecord",
    "RuleFileError",
    "Rulebook",
    "RulesChangedError",
    "StateError",
    "StoreBusyError",
    "StoreError",
    "StoreReadOnlyError",
    "StoreUnavailableError",
    "TaskView",
    "ValidationReport",
    "VersionedRow",
    "dedupe_frame",
    "link_frames",
    "load_rulebook",
    "open_db",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'govdb' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
