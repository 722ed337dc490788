"""govdb: verified master data and unverified event data for Chinese local-government service halls.

The public API: open both stores with `open_db`, then ingest -> process -> decide -> promote ->
prefill / run programmes; `GovDB.link_one` finds the master person a record is about, and
`link_frames` / `dedupe_frame` link whole files. Every error govdb raises on purpose is a `GovdbError`.
"""

from govdb.access.audit import AuditVerification, ReadRecord
from govdb.api import DistrictReport, GovDB, ProcessReport, open_db
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
    StoreError,
)
from govdb.ingest import IngestReport, QuarantinedRow, VersionedRow
from govdb.link import DedupeOutput, LinkModel, LinkOutput, LinkResult, dedupe_frame, link_frames
from govdb.promote import PromoteReport
from govdb.rulebook import Rulebook, load_rulebook
from govdb.serve import PrefilledField, PrefillResult, Profile, ProgrammeRun
from govdb.validate import ValidationReport
from govdb.verify import Actor, DecisionResult, TaskView

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
    "StoreError",
    "TaskView",
    "ValidationReport",
    "VersionedRow",
    "dedupe_frame",
    "link_frames",
    "load_rulebook",
    "open_db",
]
__version__ = "0.1.0"
