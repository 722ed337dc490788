"""Serving master data: prefilled forms and proactive programmes (master store only)."""

from govdb.serve.prefill import PrefilledField, PrefillResult, prefill_form
from govdb.serve.programmes import ProgrammeRun, run_programme, update_issuance

__all__ = [
    "PrefillResult",
    "PrefilledField",
    "ProgrammeRun",
    "prefill_form",
    "run_programme",
    "update_issuance",
]
