"""The callbacks an app registers on the extension: who the caller is
(:meth:`~AppCallbacks.owner_loader`), each webhook receiver's secret, the
filters of captured requests, and who may use the admin surfaces."""
from __future__ import annotations

import typing as t

from flask import current_app

from .access import AccessCheck, require_admin
from .models import Job
from .state import RequestFilter
from .webhooks import SecretLoader

__all__ = ["AppCallbacks", "OwnerLoader"]

#: Names the caller of the current request (``str``, or ``None``).
OwnerLoader = t.Callable[[], t.Optional[str]]


class AppCallbacks:
    """The registration decorators of :class:`~flask_jobify.Jobify`, and
    the calls into what they registered. Registering is not thread-safe
    (do it at import time, as with Flask's own decorators); the calls are."""

    def __init__(self) -> None:
        self._owner_loader: OwnerLoader | None = None
        self._callback_secret_loader: SecretLoader | None = None
        self._request_filters: list[RequestFilter] = []
        self._dashboard_access: AccessCheck | None = None

    def request_filter(self, func: RequestFilter) -> RequestFilter:
        """Register a function that rewrites every captured request before a
        job keeps it, to drop or re-derive credentials::

            @jobify.request_filter
            def short_lived_token(captured):
                return captured.with_headers(Authorization=mint_token_for_job())

        It gets and returns a :class:`~flask_jobify.capture.CapturedRequest`,
        and runs in the request that submits the job (``request`` and
        ``g`` are available). The job's run sees the filtered request,
        whatever the executor; with the Celery executor, or for operations
        that may be retried, the filtered request is what leaves the
        process. ``JOBIFY_DROP_HEADERS`` is applied first.

        .. versionadded:: 0.1
        """
        self._request_filters.append(func)
        return func

    def owner_loader(self, loader: OwnerLoader) -> OwnerLoader:
        """Register the function that names the caller (``str`` or ``None``).

        Jobs record their owner, and the jobs endpoints answer 404 to anyone
        else (not 403, which would tell them the job exists); the list shows
        each caller their own jobs. A caller the loader names ``None`` sees
        only jobs started without an owner.

        Without a loader, the job id is the capability: 128 random bits,
        so whoever holds it (and only they) can read the result or cancel
        the job. That suits jobs started by a single client or shared by
        link; it does not survive ids leaking into logs or referrers, and
        ``GET /jobs`` then lists every job: set a loader on a public API.
        """
        self._owner_loader = loader
        return loader

    def callback_secret_loader(self, loader: SecretLoader) -> SecretLoader:
        """Register the function that names each webhook receiver's secret::

            @jobify.callback_secret_loader
            def receiver_secret(url, job):
                client = Client.query.filter_by(webhook_url=url).first()
                return client.webhook_secret if client else None

        It gets the callback URL and the :class:`~flask_jobify.models.Job`,
        and returns the secret to sign with (``str`` or ``bytes``), or
        ``None`` to fall back to the operation's ``callback_secret``, then
        to ``JOBIFY_WEBHOOK_SECRET``. A URL none of them covers is refused
        at submission (``400 invalid_callback``). It runs at submission (in
        the request) and at each delivery (in an app context, in the
        process that ends the job), so it must give the same answer in
        every process. Receivers check deliveries with their own secret
        (:func:`flask_jobify.webhooks.verify`).

        .. versionadded:: 0.1
        """
        self._callback_secret_loader = loader
        return loader

    def dashboard_access(self, check: AccessCheck) -> AccessCheck:
        """Register the function that says whether the caller may use the
        admin surfaces (the dashboard and the metrics endpoint)::

            @jobify.dashboard_access
            def is_admin():
                return current_user.is_authenticated and current_user.is_admin

        It takes no arguments, runs in the request, and returns a truth
        value. Without one, they are open only to requests from this
        machine (not forwarded by a proxy:
        :func:`~flask_jobify.access.is_local_request`) to an app in debug
        mode; others get ``403 access_denied``. If it raises, the request
        gets ``500 access_check_failed`` and the server log the exception.
        They still show only the jobs the owner loader lets the caller see.

        .. versionadded:: 0.2
        """
        self._dashboard_access = check
        return check

    def require_admin(self) -> None:
        """Raise :class:`~flask_jobify.errors.AccessDenied` unless the
        caller may use the admin surfaces (see :meth:`dashboard_access`)."""
        require_admin(self._dashboard_access)

    def load_callback_secret(self, url: str, job: Job) -> str | bytes | None:
        """The receiver's secret from the callback secret loader, or ``None``."""
        if self._callback_secret_loader is None:
            return None
        # ensure_sync runs an async loader too; either returns what SecretLoader says.
        secret = current_app.ensure_sync(self._callback_secret_loader)(url, job)
        return t.cast("str | bytes | None", secret)

    def load_owner(self) -> str | None:
        """The caller's identity from the owner loader, or ``None``."""
        if self._owner_loader is None:
            return None
        owner = current_app.ensure_sync(self._owner_loader)()
        return None if owner is None else str(owner)
