"""Real HTTP servers for tests: a werkzeug server in a thread, gunicorn,
and any server command run as a subprocess (:func:`run_server`)."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import typing as t

import requests
from werkzeug.serving import make_server


@contextlib.contextmanager
def serve_app(app: t.Any, *, threaded: bool = True) -> t.Iterator[str]:
    """Serve ``app`` on a free loopback port in a thread; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=threaded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def run_gunicorn(
    app_spec: str,
    *,
    workers: int = 4,
    threads: int = 4,
    env: dict[str, str] | None = None,
    extra_args: t.Sequence[str] = (),
    ready_path: str = "/jobs",
    startup_timeout: float = 30.0,
) -> t.Iterator[str]:
    """Run ``gunicorn app_spec`` as a subprocess on a free port; yield its URL.

    Waits until ``ready_path`` answers, and stops gunicorn (SIGTERM, then
    SIGKILL) afterwards.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "gunicorn",
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers),
        "--threads", str(threads),
        "--worker-class", "gthread",
        "--graceful-timeout", "10",
        *extra_args,
        app_spec,
    ]
    process = subprocess.Popen(
        command,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{process.stdout.read()}")
            try:
                requests.get(url + ready_path, timeout=1)
                break
            except (requests.ConnectionError, requests.Timeout):  # a worker still booting
                if time.monotonic() > deadline:
                    raise RuntimeError("gunicorn did not start in time") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextlib.contextmanager
def run_server(
    command: t.Sequence[str],
    url: str,
    *,
    env: dict[str, str] | None = None,
    ready_path: str = "/ping",
    startup_timeout: float = 30.0,
) -> t.Iterator[subprocess.Popen[str]]:
    """Run a server ``command`` (listening at ``url``) in a process group of
    its own; yield the process once ``ready_path`` answers. Its output goes
    to a temporary file, printed if the server exits early. Killed
    (SIGKILL, the whole group) afterwards if it still runs."""
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=log,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"{command[0]} exited early:\n{log.read()}")
            try:
                requests.get(url + ready_path, timeout=1).raise_for_status()
                break
            except (requests.ConnectionError, requests.Timeout):  # still booting
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{command[0]} did not start in time") from None
                time.sleep(0.1)
        process.log = log  # type: ignore[attr-defined]
        yield process
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        log.close()


def stop_process_group(process: subprocess.Popen[t.Any], first: int = signal.SIGTERM) -> None:
    """Stop a process started in a session of its own: ``first`` to it
    (a graceful or cold stop), then SIGKILL to its whole group (a pool's
    children) whatever happened, waiting up to 10 s for each."""
    if process.poll() is None:
        process.send_signal(first)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # its own session: only its processes
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)
