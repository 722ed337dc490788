"""The JSON API's request and response shapes (FastAPI publishes them as OpenAPI)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Text = Field(default=None, max_length=200)


class SignIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)


class FormInfo(BaseModel):
    code: str
    title: str
    purpose: str


class Me(BaseModel):
    username: str
    display_name: str
    actor_id: str
    unit_id: str
    role: str
    forms: list[FormInfo]


class Lookup(BaseModel):
    """An ID number, or name + birth date (+ address) as the applicant says them."""

    id_number: str | None = Text
    name: str | None = Text
    birth_date: str | None = Text
    address: str | None = Text


class LinkOut(BaseModel):
    record_id: str
    person_id: str | None
    decision: str
    match_probability: float | None
    match_weight: float | None
    explanation: dict[str, Any]
    master: dict[str, Any] | None


class FieldOut(BaseModel):
    name: str
    label: str
    value: Any
    source: str | None
    verified_by: list[str]
    verified_at: str | None
    locked: bool
    masked: bool
    required: bool


class PrefillOut(BaseModel):
    form: str
    title: str
    person_id: str
    fields: list[FieldOut]
    missing: list[str]
    documents_waived: list[str]
    documents_needed: list[str]
    audit_seq: int


class SubmissionIn(BaseModel):
    """What the window captured: the form, whose it is, and the values the applicant gave."""

    form: str = Field(min_length=1, max_length=64)
    id_number: str = Field(min_length=1, max_length=40)
    phone: str | None = Text
    address: str | None = Text
    division_code: str | None = Field(default=None, max_length=20)


class SubmissionOut(BaseModel):
    app_no: str
    stored: int
    duplicate: int
    quarantined: int
    proposals: int | None


class TaskOut(BaseModel):
    task_id: int
    proposal_id: str
    step: int
    level: str
    department: str | None
    unit_id: str
    state: str
    change: str
    division_code: str | None
    created_at: str
    proposed: dict[str, Any]
    current: dict[str, Any] | None
    link: dict[str, Any] | None
    app_no: str | None


Outcome = Literal["approve", "reject", "amend", "return"]


class DecisionIn(BaseModel):
    outcome: Outcome
    reason: str | None = Field(default=None, max_length=500)
    amendments: dict[str, str] | None = None


class BatchItem(DecisionIn):
    task_id: int


class BatchIn(BaseModel):
    decisions: list[BatchItem] = Field(min_length=1, max_length=500)
    allow_refusals: bool = False


class DecisionOut(BaseModel):
    task_id: int
    outcome: str
    task_state: str
    proposal_id: str
    proposal_state: str
    next_task_id: int | None


class BatchOut(BaseModel):
    decided: list[DecisionOut]
    refused: list[dict[str, Any]]
    auto_passed: int


class ProfileOut(BaseModel):
    person_id: str | None
    purpose: str
    as_of: str
    fields: list[dict[str, Any]]
    credentials: list[dict[str, Any]]
    issuances: list[dict[str, Any]]
    conflicts: list[dict[str, Any]]
    audit_seq: int


class ConflictOut(BaseModel):
    conflict_id: int
    entity_kind: str
    entity_id: str
    field: str
    master_value: str | None
    master_source: str
    proposed_value: str | None
    proposed_source: str
    owner_department: str | None
    status: str
    resolution: str | None
    resolved_value: str | None
    resolved_by: str | None
    reason: str | None
    masked: bool


class ResolutionIn(BaseModel):
    resolution: Literal["accept", "keep", "amend"]
    value: str | None = Field(default=None, max_length=256)
    reason: str | None = Field(default=None, max_length=500)


class PromoteOut(BaseModel):
    promoted: int
    people_created: int
    fields_updated: int
    conflicts: int
    person_ids: list[str]


class Problem(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "not signed in"},
    403: {"model": Problem, "description": "not allowed for the signed-in unit"},
    404: {"model": Problem, "description": "no such person, form or task"},
    409: {"model": Problem, "description": "refused by the data's state or the rules"},
    400: {"model": Problem, "description": "a value govdb cannot use"},
}
