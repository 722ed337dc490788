"""The app factory: session sign-in, error mapping, the JSON API and the pages.

app = create_app(hall, secret_key)    # then serve it with uvicorn
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from examples.hall import accounts
from examples.hall.accounts import Account
from examples.hall.service import Forbidden, Hall
from govdb import AccessDeniedError, GovdbError, JurisdictionError, NotFoundError, StateError

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
SESSION_HOURS = 8


class NotSignedIn(Exception):
    """No valid session: the API answers 401, the pages send the browser to sign in."""


def status_of(exc: Exception) -> int:
    if isinstance(exc, NotSignedIn):
        return 401
    if isinstance(exc, (Forbidden, AccessDeniedError, JurisdictionError)):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, StateError):
        return 409
    return 400


def hall_of(request: Request) -> Hall:
    return request.app.state.hall


def signed_in(request: Request) -> Account:
    """The account of this session, read from the hall's table on every request (a deleted or
    changed account takes effect at once); nothing the client sends names the actor."""
    sid = request.session.get("sid")
    users = hall_of(request).users
    username = accounts.session_user(users, sid) if isinstance(sid, str) else None
    who = accounts.get_account(users, username) if username else None
    if who is None:
        raise NotSignedIn()
    return who


def create_app(hall: Hall, secret_key: str, *, https_only: bool = False) -> FastAPI:
    """The hall's web app over `hall`; `secret_key` signs the session cookie."""
    from examples.hall import api, pages

    app = FastAPI(
        title="govdb service-hall backend",
        version="0.1.0",
        description="Window clerks find applicants and submit what they capture; checking units "
        "decide their tasks; departments read files where their policy allows. Sign in first "
        "(POST /api/session); every call acts as the signed-in clerk and unit.",
    )
    app.state.hall = hall
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret_key,
        session_cookie="hall_session",
        max_age=SESSION_HOURS * 3600,
        same_site="lax",  # cross-site form posts carry no session
        https_only=https_only,
    )

    @app.exception_handler(NotSignedIn)
    async def _not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "not signed in: POST /api/session first"}, status_code=401)
        return RedirectResponse(f"/signin?next={request.url.path}", status_code=303)

    async def _refused(request: Request, exc: Exception) -> Response:
        status = status_of(exc)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc)}, status_code=status)
        context: dict[str, Any] = {"status": status, "message": str(exc), "who": None}
        return TEMPLATES.TemplateResponse(request, "error.html", context, status_code=status)

    app.add_exception_handler(GovdbError, _refused)
    app.add_exception_handler(Forbidden, _refused)
    app.include_router(api.router)
    app.include_router(pages.router)
    return app


Who = Depends(signed_in)
