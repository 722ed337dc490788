"""The JSON API (OpenAPI at /openapi.json, docs at /docs): the same operations as the pages."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from examples.hall import accounts
from examples.hall.accounts import Account
from examples.hall.app import Who, hall_of
from examples.hall.models import (
    ERRORS,
    BatchIn,
    BatchOut,
    ConflictOut,
    DecisionIn,
    DecisionOut,
    LinkOut,
    Lookup,
    Me,
    PrefillOut,
    ProfileOut,
    PromoteOut,
    ResolutionIn,
    SignIn,
    SubmissionIn,
    SubmissionOut,
    TaskOut,
)

router = APIRouter(prefix="/api", responses=ERRORS)


def me(request: Request, who: Account) -> dict[str, Any]:
    return {**who.__dict__, "forms": hall_of(request).forms(who)}


@router.post("/session", response_model=Me, tags=["session"])
def sign_in(request: Request, body: SignIn) -> Any:
    """Sign in: sets the signed session cookie."""
    who = accounts.authenticate(hall_of(request).users, body.username, body.password)
    if who is None:
        return JSONResponse({"detail": "wrong user name or password"}, status_code=401)
    accounts.end_session(hall_of(request).users, request.session.get("sid"))
    request.session.clear()
    request.session["sid"] = accounts.start_session(hall_of(request).users, who.username)
    return me(request, who)


@router.delete("/session", status_code=204, tags=["session"])
def sign_out(request: Request) -> None:
    """Sign out: the session ends on the server, so no copy of the cookie works after."""
    accounts.end_session(hall_of(request).users, request.session.get("sid"))
    request.session.clear()


@router.get("/me", response_model=Me, tags=["session"])
def whoami(request: Request, who: Account = Who) -> Any:
    return me(request, who)


@router.post("/applicants/search", response_model=LinkOut, tags=["window"])
def find_applicant(request: Request, body: Lookup, who: Account = Who) -> Any:
    """Find the applicant in master by ID number, or by name + birth date + address (audited)."""
    return hall_of(request).find(who, body.model_dump())


@router.get("/forms/{form}/prefill", response_model=PrefillOut, tags=["window"])
def prefill(request: Request, form: str, id_number: str = Query(max_length=40), who: Account = Who) -> Any:
    """The form filled from master: value, source, checks, locked or editable; missing fields;
    papers no longer needed (audited)."""
    return hall_of(request).prefill(who, form, id_number)


@router.post("/submissions", response_model=SubmissionOut, tags=["window"])
def submit(request: Request, body: SubmissionIn, who: Account = Who) -> Any:
    """Send what the window captured to the event store; the checks it needs open as tasks."""
    values = body.model_dump(exclude={"form", "id_number"})
    return hall_of(request).submit(who, body.form, body.id_number, values)


@router.get("/tasks", response_model=list[TaskOut], tags=["checking"])
def inbox(request: Request, limit: int = Query(200, ge=1, le=1000), who: Account = Who) -> Any:
    """The signed-in unit's open tasks, current against proposed, with the look-up's explanation."""
    return hall_of(request).inbox(who, limit)


@router.post("/tasks/{task_id}/decision", response_model=DecisionOut, tags=["checking"])
def decide(request: Request, task_id: int, body: DecisionIn, who: Account = Who) -> Any:
    """Approve, reject (with a reason), amend (with new values) or return one task."""
    decision = {"task_id": task_id, **body.model_dump()}
    return hall_of(request).decide_many(who, [decision], allow_refusals=False)["decided"][0]


@router.post("/tasks/decisions", response_model=BatchOut, tags=["checking"])
def decide_batch(request: Request, body: BatchIn, who: Account = Who) -> Any:
    """Many decisions in one transaction (refused whole unless `allow_refusals`)."""
    decisions = [d.model_dump() for d in body.decisions]
    return hall_of(request).decide_many(who, decisions, allow_refusals=body.allow_refusals)


@router.get("/profile", response_model=ProfileOut, tags=["department"])
def profile(
    request: Request,
    id_number: str = Query(max_length=40),
    purpose: str = Query(max_length=64),
    who: Account = Who,
) -> Any:
    """Everything master knows of one person (一人一档), where the department's policy allows."""
    return hall_of(request).profile(who, id_number, purpose)


@router.get("/conflicts", response_model=list[ConflictOut], tags=["department"])
def conflicts(request: Request, who: Account = Who) -> Any:
    """The open conflicts (比对) the signed-in department owns in its county."""
    return hall_of(request).conflicts(who)


@router.post("/conflicts/{conflict_id}/resolution", response_model=ConflictOut, tags=["department"])
def resolve_conflict(request: Request, conflict_id: int, body: ResolutionIn, who: Account = Who) -> Any:
    """Settle one conflict once as its owning department (409 when someone settled it first)."""
    return hall_of(request).resolve_conflict(who, conflict_id, body.resolution, body.value, body.reason)


@router.post("/promotions", response_model=PromoteOut, tags=["data bureau"])
def promote(request: Request, who: Account = Who) -> Any:
    """Apply approved changes to master (data-bureau administrators)."""
    return hall_of(request).promote(who)
