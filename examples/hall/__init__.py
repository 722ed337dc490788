"""A service-hall backend on govdb: sign-in, window pages, checking inboxes, a JSON API.

The example a hall starts from. It uses govdb only through its public API (`govdb.open_db`,
the `GovDB` facade, `govdb.Actor`); FastAPI serves pages (Jinja2, plain HTML forms) and a JSON
API described by OpenAPI; clerks sign in with argon2-hashed passwords and a signed session cookie.

    python -m examples.hall seed  --home DIR   # demo district + demo accounts (passwords printed once)
    python -m examples.hall serve --home DIR   # http://127.0.0.1:8000
"""

from examples.hall.app import create_app
from examples.hall.runtime import open_hall

__all__ = ["create_app", "open_hall"]
