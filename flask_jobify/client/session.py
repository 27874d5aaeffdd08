"""The :class:`JobSession`: a ``requests.Session`` with a :class:`JobAdapter`
mounted, plus handles on jobs (:meth:`~JobSession.submit`,
:meth:`~JobSession.resume`)."""
from __future__ import annotations

import typing as t

import requests
from requests.cookies import extract_cookies_to_jar
from requests.sessions import merge_setting

from .adapter import AUTH_ATTRIBUTE, COOKIES_ATTRIBUTE, JobAdapter, is_job_response
from .exceptions import JobNotAccepted
from .job import RemoteJob


class JobSession(requests.Session):
    """A session whose calls run as jobs, and that hands out job handles::

        s = JobSession(progress_bar=True)
        r = s.post(url, json=...)          # waits, returns the view's response
        job = s.submit("POST", url, json=...)
        job.wait(timeout=30); job.result()
        job = s.resume(job.status_url)     # from another process

    The follow-ups of a job (status polls, the result, cancellation) get
    the call's ``auth``, else the session's, applied afresh to each, as
    requests applies them to the request itself: an auth that signs each
    request (HMAC, OAuth 1, AWS SigV4, Hawk) signs each follow-up. They are
    never sent to another origin. The cookies every answer of a job sets
    (the ``202``, each status poll, the result) go into the session's jar,
    as requests keeps those of each redirect.

    Sessions are as thread-safe as requests' own: one session may follow
    many jobs from many threads.

    :param adapter: the adapter to mount on ``http://`` and ``https://``;
        by default one built from ``options``.
    :param options: :class:`JobAdapter` options (``timeout``,
        ``on_progress``, ``progress_bar``, ``poll``...).

    .. versionadded:: 0.1
    """

    def __init__(self, *, adapter: JobAdapter | None = None, **options: t.Any) -> None:
        super().__init__()
        #: The adapter mounted by this session.
        self.job_adapter = adapter if adapter is not None else JobAdapter(**options)
        self.mount("https://", self.job_adapter)
        self.mount("http://", self.job_adapter)

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        """As ``Session.prepare_request``, and note the auth it applied
        (the call's, else the session's) for the job's follow-ups, and the
        session's cookie jar, into which their answers' cookies go."""
        prepared = super().prepare_request(request)
        setattr(prepared, AUTH_ATTRIBUTE, merge_setting(request.auth, self.auth))
        setattr(prepared, COOKIES_ATTRIBUTE, self.cookies)
        return prepared

    def submit(self, method: str, url: str, **kwargs: t.Any) -> RemoteJob:
        """Start a job and return its handle at once, without waiting.

        :param kwargs: as for ``Session.request`` (``params``, ``json``,
            ``data``, ``files``, ``headers``, ``auth``, ``timeout``...);
            ``stream``, ``hooks`` and ``allow_redirects`` do not apply.
        :raises JobNotAccepted: the server answered without starting a job;
            the exception's ``response`` is that answer.
        """
        send_kwargs = self._send_settings(url, kwargs)
        prepared = self.prepare_request(requests.Request(
            method=method.upper(),
            url=url,
            headers=kwargs.get("headers"),
            files=kwargs.get("files"),
            data=kwargs.get("data") or {},
            json=kwargs.get("json"),
            params=kwargs.get("params") or {},
            auth=kwargs.get("auth"),
            cookies=kwargs.get("cookies"),
        ))
        adapter = self._job_adapter_for(url)
        job_request = adapter.job_request(prepared) or prepared
        accepted = adapter.submit(job_request, stream=False, **send_kwargs)
        extract_cookies_to_jar(self.cookies, job_request, accepted.raw)
        if not is_job_response(accepted):
            raise JobNotAccepted(
                f"{method.upper()} {url} answered {accepted.status_code} without starting"
                " a job: the view is not jobifiable, or the server does not run"
                " Flask-Jobify. The answer is this exception's response.",
                response=accepted,
            )
        return adapter.job_for(accepted, **send_kwargs)

    def resume(self, status_url: str, **kwargs: t.Any) -> RemoteJob:
        """A handle on a job started elsewhere, from its status URL
        (:attr:`RemoteJob.status_url`, or a ``Location`` header), with its record
        already fetched.

        :param kwargs: ``headers``, ``auth``, ``cookies`` (to be allowed to
            see the job), ``timeout``, ``verify``, ``cert``, ``proxies``.
        :raises JobLost: the server does not know the job.
        """
        send_kwargs = self._send_settings(status_url, kwargs)
        prepared = self.prepare_request(requests.Request(
            "GET", status_url,
            headers=kwargs.get("headers"), auth=kwargs.get("auth"), cookies=kwargs.get("cookies"),
        ))
        job = self._job_adapter_for(status_url).job_at(prepared, **send_kwargs)
        job.status()
        return job

    def _send_settings(self, url: str, kwargs: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
        settings = self.merge_environment_settings(
            url, kwargs.get("proxies") or {}, False, kwargs.get("verify"), kwargs.get("cert")
        )
        settings.pop("stream", None)
        return {"timeout": kwargs.get("timeout"), **settings}

    def _job_adapter_for(self, url: str) -> JobAdapter:
        adapter = self.get_adapter(url)
        return adapter if isinstance(adapter, JobAdapter) else self.job_adapter


__all__ = ["JobSession"]
