"""Serving master data: prefilled forms, look-ups, profiles and proactive programmes (master only)."""

from govdb.serve.issuance import IssuanceMove, selection, update_issuance
from govdb.serve.prefill import PrefilledField, PrefillResult, prefill_form
from govdb.serve.profile import Profile, ProfileField, person_profile, who_read
from govdb.serve.programmes import ProgrammeRun, run_programme

__all__ = [
    "IssuanceMove",
    "PrefillResult",
    "PrefilledField",
    "Profile",
    "ProfileField",
    "ProgrammeRun",
    "person_profile",
    "prefill_form",
    "run_programme",
    "selection",
    "update_issuance",
    "who_read",
]
