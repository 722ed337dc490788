"""python -m examples.hall seed|serve --home DIR (or --master-url/--events-url for PostgreSQL)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from govdb import GovdbError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.hall", description=__doc__)
    parser.add_argument("command", choices=["seed", "serve"])
    parser.add_argument("--home", type=Path, help="folder of the SQLite stores and the hall's accounts")
    parser.add_argument("--master-url", help="SQLAlchemy URL of the master store (PostgreSQL)")
    parser.add_argument("--events-url", help="SQLAlchemy URL of the event store (PostgreSQL)")
    parser.add_argument("--hall-url", help="SQLAlchemy URL of the hall's accounts (default: home or events)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--promote-every", type=float, default=60.0, help="seconds; 0 turns the timer off")
    args = parser.parse_args(argv)

    from examples.hall.runtime import Promoter, open_hall, session_secret

    try:
        if args.home:
            args.home.mkdir(parents=True, exist_ok=True)
        hall = open_hall(
            args.home, master_url=args.master_url, events_url=args.events_url, hall_url=args.hall_url
        )
        if args.command == "seed":
            from examples.hall.seed import seed

            report = seed(hall, args.home or Path.cwd())
            print("Demo accounts (passwords are shown only now):")
            for username, (password, unit) in report.passwords.items():
                print(f"  {username:<10} {password:<20} {unit}")
            a = report.applicant
            print(f"Walk-in applicant without an ID card: {a['name']}, {a['birth_date']}, {a['address']}")
            return 0
    except GovdbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    import uvicorn

    from examples.hall.app import create_app

    promoter = Promoter(hall, args.promote_every) if args.promote_every > 0 else None
    if promoter:
        promoter.start()
    try:
        uvicorn.run(create_app(hall, session_secret(hall)), host=args.host, port=args.port)
    finally:
        if promoter:
            promoter.stop()
        hall.db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
