"""Command-line client of the demo: submit a job, watch it, Ctrl-C cancels.

::

    python -m example_app.client long --seconds 5
    python -m example_app.client import pets.csv --delay 0.2
    python -m example_app.client report --month 2024-03 -o orders.csv
    python -m example_app.client --url http://127.0.0.1:8000 pets

``--callback URL`` asks for a webhook when the job ends (the server needs
``JOBIFY_WEBHOOK_SECRET``); ``--idempotency-key KEY`` makes a retried
submission return the first job.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import typing as t

import requests
from tqdm import tqdm

DEFAULT_URL = os.environ.get("DEMO_URL", "http://127.0.0.1:8000")


def run_job(session: requests.Session, method: str, url: str, **kwargs: t.Any) -> requests.Response:
    """Send a request as a job, show its progress, return the final response.

    Ctrl-C cancels the job on the server (``DELETE /jobs/<id>``).
    """
    headers = {"X-Job-Flag": "ON", **kwargs.pop("headers", {})}
    accepted = session.request(method, url, headers=headers, **kwargs)
    if accepted.status_code != 202:
        return accepted  # not a job: refused, or answered directly
    status_url = requests.compat.urljoin(url, accepted.headers["Location"])
    bar = tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {n:.0f}% {postfix}")
    try:
        job = accepted.json()
        while job["status"] in ("pending", "running"):
            job = session.get(status_url, params={"wait": 10}, timeout=30).json()
            progress = job.get("progress") or {}
            if progress.get("percent") is not None:
                bar.update(progress["percent"] - bar.n)
            bar.set_postfix_str(progress.get("message") or job["status"])
    except KeyboardInterrupt:
        bar.write("Cancelling the job...")
        session.delete(status_url, timeout=10)
        raise
    finally:
        bar.close()
    return session.get(requests.compat.urljoin(url, job["resultUrl"]), timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m example_app.client", description=__doc__,
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
    session = requests.Session()
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
            r = session.get(f"{base}/pets", timeout=30)
    except KeyboardInterrupt:
        print("Cancelled.", file=sys.stderr)
        return 130
    if args.command == "report" and r.ok:
        if args.output:
            with open(args.output, "wb") as out:
                out.write(r.content)
            print(f"Wrote {len(r.content)} bytes to {args.output}", file=sys.stderr)
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
