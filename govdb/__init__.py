"""govdb: verified master data and unverified event data for Chinese local-government service halls.

The public API: open both stores with `open_db`, then ingest -> process -> decide -> promote ->
prefill / run programmes. Every error govdb raises on purpose is a `GovdbError`.
"""

from govdb.api import DistrictReport, GovDB, ProcessReport, open_db
from govdb.errors import (
    AccessDeniedError,
    ConfigError,
    GovdbError,
    InputFileError,
    JurisdictionError,
    NotFoundError,
    RuleFileError,
    StateError,
)
from govdb.ingest import IngestReport
from govdb.promote import PromoteReport
from govdb.rulebook import Rulebook, load_rulebook
from govdb.serve import PrefilledField, PrefillResult, ProgrammeRun
from govdb.validate import ValidationReport
from govdb.verify import Actor, DecisionResult, TaskView

__all__ = [
    "AccessDeniedError",
    "Actor",
    "ConfigError",
    "DecisionResult",
    "DistrictReport",
    "GovDB",
    "GovdbError",
    "IngestReport",
    "InputFileError",
    "JurisdictionError",
    "NotFoundError",
    "PrefillResult",
    "PrefilledField",
    "ProcessReport",
    "ProgrammeRun",
    "PromoteReport",
    "RuleFileError",
    "Rulebook",
    "StateError",
    "TaskView",
    "ValidationReport",
    "load_rulebook",
    "open_db",
]
__version__ = "0.1.0"
