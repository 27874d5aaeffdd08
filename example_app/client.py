"""Command-line client of the demo, built on :mod:`flask_jobify.client`:
submit a job, watch its progress bar, Ctrl-C cancels it on the server.

::

    python -m example_app.client long --seconds 5
    python -m example_app.client import pets.csv --delay 0.2
    python -m example_app.client report --month 2024-03 -o orders.csv
    python -m example_app.client --url http://127.0.0.1:8000 pets

``--callback URL`` asks for a webhook when the job ends (the server needs
``JOBIFY_WEBHOOK_SECRET``); ``--idempotency-key KEY`` makes a retried
submission return the first job (the server needs ``SECRET_KEY``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import typing as t

import requests

from flask_jobify.client import JobClientError, JobNotAccepted, JobSession

DEFAULT_URL = os.environ.get("DEMO_URL", "http://127.0.0.1:8000")


def run_job(session: JobSession, method: str, url: str, **kwargs: t.Any) -> requests.Response:
    """Submit ``method url`` as a job, follow it to its end (the session's
    progress bar or callback shows its progress) and return the view's
    response. Ctrl-C cancels the job on the server, with a session made by
    :func:`make_session`."""
    try:
        job = session.submit(method, url, **kwargs)
    except JobNotAccepted as exc:
        return exc.response  # answered directly, or refused
    print(f"Job {job.id} accepted; following {job.status_url}", file=sys.stderr)
    return job.result()


def make_session(**options: t.Any) -> JobSession:
    """A :class:`JobSession` with a progress bar that cancels on Ctrl-C."""
    options.setdefault("progress_bar", True)
    return JobSession(cancel_on_interrupt=True, **options)


def plain_text(rest: str) -> str:
    """``rest`` (reST) as plain text for ``--help``: no roles, no inline
    literals' backquotes, no ``::`` before a literal block."""
    text = re.sub(r":[a-z:]+:`~?([^`]+)`", r"\1", rest)
    text = text.replace("``", "")
    text = re.sub(r"^[ \t]*::[ \t]*\n", "", text, flags=re.M)
    return re.sub(r"::$", ":", text, flags=re.M)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m example_app.client",
                                     description=plain_text(__doc__ or ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=DEFAULT_URL, help="the demo's base URL")
    parser.add_argument("--callback", help="webhook URL called when the job ends")
    parser.add_argument("--idempotency-key", help="send this Idempotency-Key")
    commands = parser.add_subparsers(dest="command", required=True)
    long = commands.add_parser("long", help="the long ping")
    long.add_argument("--seconds", type=float, default=5.0)
    imp = commands.add_parser("import", help="import a CSV of pets (name,species,age)")
    imp.add_argument("csv", type=argparse.FileType("rb"))
    imp.add_argument("--delay", type=float, default=0.1, help="seconds per row, for show")
    report = commands.add_parser("report", help="download the orders report of a month")
    report.add_argument("--month", default="2024-03")
    report.add_argument("-o", "--output", default=None, help="file to write (default: stdout)")
    commands.add_parser("pets", help="list the pets")
    args = parser.parse_args(argv)

    base = args.url.rstrip("/")
    session = make_session()
    if args.callback:
        session.headers["X-Job-Callback"] = args.callback
    if args.idempotency_key:
        session.headers["Idempotency-Key"] = args.idempotency_key
    try:
        if args.command == "long":
            r = run_job(session, "POST", f"{base}/status/long", params={"seconds": args.seconds})
        elif args.command == "import":
            r = run_job(session, "POST", f"{base}/pets/import",
                        files={"file": args.csv}, data={"delay": args.delay})
        elif args.command == "report":
            r = run_job(session, "POST", f"{base}/reports/orders", json={"month": args.month})
        else:
            r = session.get(f"{base}/pets", headers={"X-Job-Flag": "OFF"}, timeout=30)
    except KeyboardInterrupt:
        print("Cancelled.", file=sys.stderr)
        return 130
    except JobClientError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return show(r, getattr(args, "output", None), args.command == "report")


def show(r: requests.Response, output: str | None, is_file: bool) -> int:
    """Print the view's response (or write it to ``output``)."""
    if is_file and r.ok:
        if output:
            with open(output, "wb") as out:
                out.write(r.content)
            print(f"Wrote {len(r.content)} bytes to {output}", file=sys.stderr)
        else:
            sys.stdout.write(r.text)
        return 0
    try:
        print(json.dumps(r.json(), indent=2))
    except ValueError:
        print(r.text)
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main())
