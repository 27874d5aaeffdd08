"""The :class:`RemoteJob` handle: one server-side job, seen from the client."""
from __future__ import annotations

import contextlib
import threading
import time
import typing as t
from urllib.parse import urljoin

import requests

from ..protocol import JobProgress, JobStatus
from .awaiting import long_poll_result, long_polls_result
from .exceptions import JobRecord
from .outcome import client_timeout, fetch_result, unexpected_answer
from .policy import PollPolicy, count, delay
from .progress import ProgressBar, ProgressCallback, progress_from_record
from .record import accepted_body, job_record
from .transport import LongPollCut, Transport, sleep_within


class AdapterOptions(t.Protocol):
    """What a :class:`RemoteJob` reads of the adapter that follows it: the options
    of a :class:`~flask_jobify.client.JobAdapter`, which has them all. (A
    protocol, so that this module does not import the adapter's, which
    imports it.)"""

    @property
    def poll(self) -> PollPolicy: ...
    @property
    def on_progress(self) -> ProgressCallback | None: ...
    @property
    def progress_bar(self) -> bool: ...
    @property
    def raise_on_failure(self) -> bool: ...
    @property
    def cancel_on_timeout(self) -> bool: ...
    @property
    def cancel_on_interrupt(self) -> bool: ...


class RemoteJob:
    """A handle on one job: its status, progress, result, and cancellation.

    :meth:`JobSession.submit <flask_jobify.client.JobSession.submit>` and
    :meth:`~flask_jobify.client.JobSession.resume` make these; the adapter
    uses one to follow each job it starts. Progress callbacks, the progress
    bar, the poll policy and the failure options are the adapter's.

    Thread-safe: several threads may wait on one job; progress callbacks are
    called once per change, in order.

    :param adapter: the adapter whose options apply.
    :param transport: sends the follow-up requests.
    :param status_url: the absolute URL of ``GET /jobs/<id>``.
    :param record: the job record when it is already known.
    :param accepted: the ``202 Accepted`` that started the job, if this
        client started it.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        adapter: AdapterOptions,
        transport: Transport,
        status_url: str,
        *,
        record: JobRecord | None = None,
        accepted: requests.Response | None = None,
    ) -> None:
        self._adapter = adapter
        self._transport = transport
        #: The absolute URL of the job's status (``GET``/``DELETE``).
        self.status_url = status_url
        #: The ``202 Accepted`` that started the job; ``None`` once resumed.
        self.accepted = accepted
        self._lock = threading.Lock()
        self._notify_lock = threading.Lock()
        self._record = record
        self._last_status: requests.Response | None = None
        #: Seconds the last status request without ``wait`` took.
        self._round_trip: float | None = None
        self._shown = JobProgress()
        self._bar: ProgressBar | None = None
        self._id: str | None = None
        self._result_url: str | None = None
        #: Seconds asked per long-poll: the policy's, less once a gateway
        #: cut one; ``0`` once the client polls instead.
        self._wait = adapter.poll.wait
        #: The method of the request that started the job, when known.
        self._method = None if accepted is None else accepted.request.method
        if accepted is not None:
            body = accepted_body(accepted)
            self._id = accepted.headers.get("X-Job-Id") or body.get("jobId")
            if body.get("resultUrl"):
                self._result_url = urljoin(status_url, body["resultUrl"])

    def __repr__(self) -> str:
        return f"<RemoteJob {self.id} [{self.record.get('status', 'pending')}]>"

    # -- what is known --------------------------------------------------------
    @property
    def id(self) -> str:
        """The job's id."""
        record_id = self.record.get("id")
        if record_id:
            return str(record_id)
        return self._id or self.status_url.rstrip("/").rsplit("/", 1)[-1]

    @property
    def record(self) -> JobRecord:
        """The last job record seen (a copy); ``{}`` before the first poll."""
        with self._lock:
            return dict(self._record or {})

    @property
    def result_url(self) -> str:
        """The absolute URL of the job's result."""
        url = self.record.get("resultUrl")
        if url:  # a string: job_record checks it
            return urljoin(self.status_url, t.cast(str, url))
        return self._result_url or self.status_url.rstrip("/") + "/result"

    @property
    def progress(self) -> JobProgress:
        """The progress last seen."""
        return progress_from_record(self.record)

    @property
    def done(self) -> bool:
        """Whether the job was last seen in a final status."""
        status = self.record.get("status")
        return status is not None and JobStatus(status).is_final

    # -- asking the server ----------------------------------------------------
    def status(self) -> JobStatus:
        """Ask the server for the job's status now (no waiting).

        :raises JobLost: the server no longer knows the job.
        :raises JobConnectionError: the server could not be reached.
        """
        self._poll(None, None)
        return JobStatus(self.record["status"])

    def wait(self, timeout: float | None = None) -> bool:
        """Follow the job until it ends or ``timeout`` seconds pass.

        Long-polls the server, calling the progress callbacks on each change.
        :return: whether the job has ended (in any final status).
        """
        with self._interrupts():
            return self._follow(None if timeout is None else time.monotonic() + timeout)

    def result(self, timeout: float | None = None, *, stream: bool = False) -> requests.Response:
        """Wait for the job to end and return the view's response.

        A failed job returns its stored error response, unless the adapter
        has ``raise_on_failure``. As from the adapter, the response has the
        ``url`` of the request that started the job and ``history`` holding
        its ``202`` and the status answer that saw it end (for a resumed
        job: that status answer, and the result's ``url``).

        :param timeout: seconds to wait; ``None`` waits as long as it takes.
        :raises JobTimedOut: the job timed out on the server, or ``timeout``
            passed (the job is then cancelled if ``cancel_on_timeout``).
        :param stream: as in requests: leave the body to be read from
            ``iter_content()``.
        :raises JobWasCancelled: the job was cancelled.
        :raises JobFailed: the job failed and ``raise_on_failure`` is set,
            or it failed leaving no response.
        :raises JobLost: the server no longer knows the job or its result.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        return self.follow_to_result(deadline, stream=stream)

    def cancel(self) -> bool:
        """Ask the server to cancel the job, if it is still active.

        A job that has ended is left as it is, its result included: this
        asks for its status first and sends ``DELETE`` only while it is
        ``pending`` or ``running``. (A job that ends between the two is
        deleted by the ``DELETE``, result included, as the server forgets a
        finished job it is asked to delete; this then returns ``False``.)
        To remove a finished job and its result, :meth:`delete` it.

        :return: ``True`` if the job was cancelled, or will stop soon (it was
            running); ``False`` if it had already ended.
        :raises JobLost: the server does not know the job.
        :raises JobConnectionError: the server could not be reached.
        """
        if self.status().is_final:
            return False
        return self._delete()

    def delete(self) -> bool:
        """Remove the job from the server: a finished job is forgotten with
        its result (later requests for it get ``404``); an active one is
        cancelled first (see :meth:`cancel`), and kept until it ends.

        :return: ``True`` if the job was active and is now cancelled (or
            will stop soon), ``False`` if it had ended and is now deleted.
        :raises JobLost: the server does not know the job.
        :raises JobConnectionError: the server could not be reached.

        .. versionadded:: 0.1
        """
        return self._delete()

    def _delete(self) -> bool:
        response = self._transport.send_with_retries("DELETE", self.status_url, job=self.record)
        assert response is not None  # no deadline
        if response.status_code == 204:
            return False
        if response.status_code in (200, 202):
            self._take(response)
            return True
        raise unexpected_answer(self.record, response, job_id=self.id)

    # -- following --------------------------------------------------------------
    def follow_to_result(
        self, deadline: float | None, *, stream: bool = False
    ) -> requests.Response:
        """:meth:`result`, with a ``time.monotonic()`` deadline; without
        progress to show, by long-polling the result itself (see
        :func:`~flask_jobify.client.awaiting.long_poll_result`)."""
        try:
            with self._interrupts():
                response = None
                if not self.done and long_polls_result(self._adapter, self._wait, self._method):
                    response = long_poll_result(
                        self._transport, self.result_url, self.id, wait=self._wait,
                        deadline=deadline, stream=stream, take=self._take)
                if response is None:
                    if not self._follow(deadline):
                        self._give_up()
                    response = self._fetch_result(deadline, stream)
        finally:
            self.close()
        if self.accepted is not None:
            response.url = self.accepted.url
            response.request = self.accepted.request
        response.history = [r for r in (self.accepted, self.last_status_response) if r is not None]
        return response

    def close(self) -> None:
        """Remove the progress bar, if one is shown."""
        with self._notify_lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    @contextlib.contextmanager
    def _interrupts(self) -> t.Iterator[None]:
        """Cancel the job on Ctrl-C, if the adapter says so."""
        try:
            yield
        except KeyboardInterrupt:
            if self._adapter.cancel_on_interrupt:
                self._cancel_quietly()
            raise

    def _follow(self, deadline: float | None) -> bool:
        """Long-poll (or poll, if the server does not long-poll, its
        records have no ``version``, or a gateway cuts long-polls) until the
        job ends; ``False`` if ``deadline`` came first."""
        policy = self._adapter.poll
        long_poll = True  # until the server shows otherwise
        pacing = policy.retry()  # spaces out plain polls
        if self._adapter.progress_bar and not self.done:
            with self._notify_lock:
                if self._bar is None:
                    self._bar = ProgressBar(self.id)
        while not self.done:
            remaining = float("inf") if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return False
            # A long-poll answers the next change, so the state of a job not
            # seen yet is asked for without waiting.
            asked = min(self._wait, remaining) if "version" in self.record else None
            started = time.monotonic()
            try:
                polled = self._poll(asked, deadline)
            except LongPollCut as cut:
                self._cut(cut.elapsed)
                pacing = count(pacing, "GET", self.status_url, response=cut.response)
                if not sleep_within(delay(pacing, cut.response, policy.retry_after_max), deadline):
                    return self.done
                continue
            if polled is None:
                return False
            response, changed = polled
            if self.done:
                break
            if changed:
                pacing = policy.retry()
            else:
                elapsed = time.monotonic() - started
                if asked is not None and policy.long_poll_ignored(asked, elapsed, self._round_trip):
                    long_poll = False
            # A plain poll (no long-poll asked, or the server does not hold
            # them, or its records have no version to long-poll on) is paced.
            if not long_poll or asked == 0 or "version" not in self.record:
                pacing = count(pacing, "GET", self.status_url, response=response)
                if not sleep_within(delay(pacing, response, policy.retry_after_max), deadline):
                    return self.done
        self.close()
        return True

    def _cut(self, elapsed: float) -> None:
        """A gateway cut a long-poll after ``elapsed`` seconds: ask for half
        that from now on, or, once already shortened, poll instead."""
        policy = self._adapter.poll
        with self._lock:
            shortened = self._wait < policy.wait
            self._wait = 0.0 if shortened else min(self._wait, policy.shortened_wait(elapsed))

    def _poll(
        self, wait: float | None, deadline: float | None
    ) -> tuple[requests.Response, bool] | None:
        """One status request (with retries): the answer and whether the
        record changed, or ``None`` when ``deadline`` passed.

        :raises LongPollCut: a gateway cut the long-poll.
        """
        started = time.monotonic()
        url = self.status_url
        if wait is not None and "version" in self.record:
            # Servers answer at once if the job moved past what we saw.
            url += ("&" if "?" in url else "?") + f"version={self.record['version']}"
        response = self._transport.send_with_retries(
            "GET", url, wait=wait, deadline=deadline, job=self.record, round_trip=self._round_trip
        )
        if response is None:
            return None
        if wait is None:
            self._round_trip = time.monotonic() - started
        if response.status_code not in (200, 303):  # 303: succeeded, JOBIFY_SEE_OTHER
            raise unexpected_answer(self.record, response, job_id=self.id)
        return response, self._take(response)

    def _take(self, response: requests.Response) -> bool:
        """Keep the record in ``response`` (unless an older one came late),
        show its progress, and tell whether it differs from the last one."""
        record = job_record(response, job=self.record or None)
        with self._lock:
            old = self._record or {}
            changed = record.get("version") != old.get("version")
            newer = record.get("version", 0) >= old.get("version", -1)
            if newer:
                self._record = record
                self._last_status = response
        if newer:
            self._show(progress_from_record(record))
        return changed

    def _show(self, progress: JobProgress) -> None:
        adapter = self._adapter
        with self._notify_lock:
            if progress == self._shown:
                return
            self._shown = progress
            if self._bar is not None:
                self._bar(progress)
            if adapter.on_progress is not None:
                adapter.on_progress(progress)

    def _give_up(self) -> t.NoReturn:
        """The client's deadline passed while the job was active, or before
        the result of the ended job came (that job is left alone)."""
        cancel = self._adapter.cancel_on_timeout and not self.done
        if cancel:
            self._cancel_quietly()
        raise client_timeout(self.record, self.status_url, cancelled=cancel,
                             last_status=self.last_status_response, result_url=self.result_url,
                             job_id=self.id)

    def _cancel_quietly(self) -> None:
        with contextlib.suppress(requests.RequestException):
            self.cancel()  # best effort: we are already on the way out with an error

    def _fetch_result(self, deadline: float | None, stream: bool) -> requests.Response:
        response = fetch_result(
            self.record, self.result_url, self._transport, deadline=deadline, stream=stream,
            raise_on_failure=self._adapter.raise_on_failure,
            last_status=self.last_status_response, method=self._method, job_id=self.id,
        )
        if response is None:
            self._give_up()
        return response

    @property
    def last_status_response(self) -> requests.Response | None:
        """The status answer that brought the current record."""
        with self._lock:
            return self._last_status


__all__ = ["AdapterOptions", "RemoteJob"]
