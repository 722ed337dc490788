"""The pages: plain HTML forms rendered by Jinja2, no JavaScript build step."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from examples.hall import accounts
from examples.hall.accounts import Account
from examples.hall.app import TEMPLATES, Who, hall_of

router = APIRouter(include_in_schema=False)
HOME = {"window": "/window", "checker": "/inbox", "department": "/inbox", "admin": "/admin"}


def page(request: Request, name: str, who: Account | None, status: int = 200, **context: Any) -> Response:
    return TEMPLATES.TemplateResponse(request, name, {"who": who, **context}, status_code=status)


def _next(target: str) -> str:
    """Only a path of this site (no open redirect)."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


@router.get("/signin")
def signin_page(request: Request, next: str = "/") -> Response:
    return page(request, "signin.html", None, next=_next(next), error=None)


@router.post("/signin")
def signin(
    request: Request, username: str = Form(), password: str = Form(), next: str = Form("/")
) -> Response:
    who = accounts.authenticate(hall_of(request).users, username, password)
    if who is None:
        return page(request, "signin.html", None, 401, next=_next(next), error="用户名或密码错误")
    accounts.end_session(hall_of(request).users, request.session.get("sid"))
    request.session.clear()
    request.session["sid"] = accounts.start_session(hall_of(request).users, who.username)
    target = _next(next)
    return RedirectResponse(HOME[who.role] if target == "/" else target, status_code=303)


@router.post("/signout")
def signout(request: Request) -> Response:
    accounts.end_session(hall_of(request).users, request.session.get("sid"))
    request.session.clear()
    return RedirectResponse("/signin", status_code=303)


@router.get("/")
def home(who: Account = Who) -> Response:
    return RedirectResponse(HOME[who.role], status_code=303)


# --- the window --------------------------------------------------------------------------------


@router.get("/window")
def window(request: Request, who: Account = Who) -> Response:
    hall_of(request).require_window(who)
    return page(request, "find.html", who, found=None, query={})


@router.post("/window/find")
def find(
    request: Request,
    id_number: str = Form(""),
    name: str = Form(""),
    birth_date: str = Form(""),
    address: str = Form(""),
    who: Account = Who,
) -> Response:
    hall = hall_of(request)
    query = {"id_number": id_number, "name": name, "birth_date": birth_date, "address": address}
    found = hall.find(who, query)
    return page(request, "find.html", who, found=found, query=query, forms=hall.forms(who))


@router.post("/window/form")
def form_page(
    request: Request,
    form: str = Form(),
    id_number: str = Form(),
    division_code: str = Form(""),
    who: Account = Who,
) -> Response:
    filled = hall_of(request).prefill(who, form, id_number)
    return page(request, "form.html", who, filled=filled, id_number=id_number, division_code=division_code)


@router.post("/window/submit")
def submit(
    request: Request,
    form: str = Form(),
    id_number: str = Form(),
    phone: str = Form(""),
    address: str = Form(""),
    division_code: str = Form(""),
    who: Account = Who,
) -> Response:
    values = {"phone": phone, "address": address, "division_code": division_code}
    result = hall_of(request).submit(who, form, id_number, values)
    return page(request, "submitted.html", who, result=result)


# --- checking units ----------------------------------------------------------------------------


@router.get("/inbox")
def inbox(request: Request, done: int | None = None, who: Account = Who) -> Response:
    tasks = hall_of(request).inbox(who)
    return page(request, "inbox.html", who, tasks=tasks, done=done)


@router.post("/inbox/decide")
async def decide(request: Request, who: Account = Who) -> Response:
    """One form for single and batch decisions: the ticked tasks (or the one whose button was
    pressed), one outcome, a reason, and `field=value` lines for an amend."""
    data = await request.form()
    ids = [int(t) for t in data.getlist("task_id") if str(t).isdigit()]
    outcome = str(data.get("outcome", ""))
    if ":" in outcome:  # a per-task button: "approve:12"
        outcome, one = outcome.split(":", 1)
        ids = [int(one)] if one.isdigit() else []
    reason = str(data.get("reason", "")).strip() or None
    amendments = dict(
        line.split("=", 1) for line in str(data.get("amendments", "")).splitlines() if "=" in line
    )
    decisions = [
        {"task_id": t, "outcome": outcome, "reason": reason,
         "amendments": {k.strip(): v.strip() for k, v in amendments.items()} if outcome == "amend" else None}
        for t in ids
    ]  # fmt: skip
    if not decisions:
        return RedirectResponse("/inbox", status_code=303)
    from starlette.concurrency import run_in_threadpool

    report = await run_in_threadpool(hall_of(request).decide_many, who, decisions, False)
    return RedirectResponse(f"/inbox?done={len(report['decided'])}", status_code=303)


# --- department and data bureau ----------------------------------------------------------------


@router.get("/profile")
def profile_page(request: Request, who: Account = Who) -> Response:
    return page(request, "profile.html", who, file=None, id_number="", purpose="")


@router.post("/profile")
def profile(request: Request, id_number: str = Form(), purpose: str = Form(), who: Account = Who) -> Response:
    file = hall_of(request).profile(who, id_number, purpose)
    return page(request, "profile.html", who, file=file, id_number=id_number, purpose=purpose)


@router.get("/admin")
def admin(request: Request, who: Account = Who) -> Response:
    return page(request, "admin.html", who, report=None)


@router.post("/admin/promote")
def promote(request: Request, who: Account = Who) -> Response:
    report = hall_of(request).promote(who)
    return page(request, "admin.html", who, report=report)


@router.get("/conflicts")
def conflicts_page(request: Request, done: int | None = None, who: Account = Who) -> Response:
    found = hall_of(request).conflicts(who)
    return page(request, "conflicts.html", who, conflicts=found, done=done)


@router.post("/conflicts/{conflict_id}")
def resolve(
    request: Request,
    conflict_id: int,
    resolution: str = Form(),
    value: str = Form(""),
    reason: str = Form(""),
    who: Account = Who,
) -> Response:
    hall_of(request).resolve_conflict(
        who, conflict_id, resolution, value.strip() or None if resolution == "amend" else None, reason or None
    )
    return RedirectResponse(f"/conflicts?done={conflict_id}", status_code=303)
