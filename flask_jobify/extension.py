"""The :class:`Jobify` extension."""
from __future__ import annotations

import atexit
import dataclasses
import functools
import json
import time
import typing as t
import warnings
import weakref

from flask import Flask, Response, current_app, g, request, url_for
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Response as WerkzeugResponse

from .access import AccessCheck, require_admin
from .capture import capture_request
from .context import job_of_request
from .dashboard import create_dashboard_blueprint
from .errors import (
    ConfigWarning,
    ContentTooLarge,
    IdempotencyMismatch,
    InvalidJobFlag,
    JobifyHTTPError,
    QueueFull,
    ShuttingDown,
    StoreError,
    StoreUnavailable,
    http_exception_response,
)
from .events import add_event_routes
from .idempotency import (
    credentials_digest,
    fingerprint,
    idempotency_key,
    job_id_for_key,
    secret_of,
    submit_once,
)
from .models import Job, JobStatus, new_job_id
from .openapi import add_spec_routes, register_api
from .options import OPTIONS_ATTR, JobOptions, looks_decorated, options_of
from .replay import replay_response
from .schemas import AcceptedJobSchema
from .serving import at_uwsgi_exit, max_wait, wait_while_serving
from .settings import Settings
from .signals import job_accepted
from .state import JobifyState, RequestFilter
from .stores.base import JobStore
from .trigger import (
    JOB_FLAG_HEADER,
    JOB_ID_HEADER,
    MAX_WAIT_HEADER,
    VARY_HEADERS,
    JobTrigger,
    parse_trigger,
)
from .views import create_jobs_blueprint
from .webhooks import CALLBACK_HEADER, SecretLoader, callback_meta

if t.TYPE_CHECKING:
    import celery
    from flask_smorest import Api

F = t.TypeVar("F", bound=t.Callable[..., t.Any])
#: Attribute a store instance carries once an app uses it: the app's name.
_STORE_APP_ATTR = "_jobify_app_name"
OwnerLoader = t.Callable[[], t.Optional[str]]

_ACCEPTED_SCHEMA = AcceptedJobSchema()


class Jobify:
    """Run Flask views as background jobs when the client asks.

    A request to a jobifiable view (decorated with :meth:`job`, or any view
    with ``JOBIFY_ALL_VIEWS``) that carries ``X-Job-Flag: ON`` or
    ``Prefer: respond-async`` is answered at once with ``202 Accepted``; the
    view runs in the background and its response is kept for
    ``GET /jobs/<id>/result``. Without the header the view runs as before.

    Configuration keys, read once in :meth:`init_app` (defaults in
    :mod:`flask_jobify.config`): ``JOBIFY_STORE``, ``JOBIFY_REDIS_PREFIX``,
    ``JOBIFY_MAX_WORKERS``,
    ``JOBIFY_MAX_QUEUED``, ``JOBIFY_MAX_WAIT``, ``JOBIFY_BLOCKING_MAX_WAIT``,
    ``JOBIFY_RESULT_TTL``,
    ``JOBIFY_DEFAULT_TIMEOUT``, ``JOBIFY_RETRY_AFTER``, ``JOBIFY_ALL_VIEWS``,
    ``JOBIFY_URL_PREFIX``, ``JOBIFY_SHUTDOWN_GRACE``,
    ``JOBIFY_CLEANUP_INTERVAL``, ``JOBIFY_CANCEL_CHECK_INTERVAL``,
    ``JOBIFY_EXPOSE_ERRORS``, ``JOBIFY_DROP_HEADERS``, ``JOBIFY_EXECUTOR``,
    ``JOBIFY_LEASE_SECONDS``, ``JOBIFY_RETRY_MAX_BACKOFF``, ``JOBIFY_SWAGGER_UI``,
    ``JOBIFY_SWAGGER_UI_URL``, ``JOBIFY_WEBHOOK_SECRET``,
    ``JOBIFY_WEBHOOK_MAX_ATTEMPTS``, ``JOBIFY_WEBHOOK_BACKOFF``,
    ``JOBIFY_WEBHOOK_MAX_BACKOFF``, ``JOBIFY_WEBHOOK_TIMEOUT``,
    ``JOBIFY_WEBHOOK_WORKERS``, ``JOBIFY_WEBHOOK_ALLOWED_HOSTS``,
    ``JOBIFY_RESULT_COOKIES``, ``JOBIFY_STORE_RETRY_SECONDS``.
    ``Idempotency-Key`` needs ``SECRET_KEY`` (see
    :mod:`flask_jobify.idempotency`).

    One instance may serve several apps; each app's state lives in
    ``app.extensions["jobify"]``.

    :param app: the app to register with now, or ``None`` for
        :meth:`init_app` later (app factory).
    :param store: a store instance to use instead of ``JOBIFY_STORE``, for
        the first app registered only: a store object serves one app. Other
        apps use their own ``JOBIFY_STORE`` (which may name the same file or
        Redis database: each job names its app), or a store
        given to ``init_app(app, store=...)``; one with neither is refused.

    .. versionadded:: 0.1
    """

    def __init__(self, app: Flask | None = None, *, store: JobStore | None = None) -> None:
        self._store = store
        #: Name of the app that took ``store`` (it serves one app only).
        self._store_taken_by: str | None = None
        self._owner_loader: OwnerLoader | None = None
        self._callback_secret_loader: SecretLoader | None = None
        self._request_filters: list[RequestFilter] = []
        self._dashboard_access: AccessCheck | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, *, store: JobStore | None = None) -> None:
        """Register the extension with ``app``: read the config, open the
        store, mount the jobs blueprint and add the request hooks.

        Every ``JOBIFY_*`` key is read, coerced and checked here, once
        (:meth:`Settings.from_app <flask_jobify.settings.Settings.from_app>`):
        set them before. Unknown ``JOBIFY_*`` keys get a
        :class:`~flask_jobify.errors.ConfigWarning`.

        :param store: a store instance for this app, instead of
            ``JOBIFY_STORE`` (and of the one given to :class:`Jobify`). Give
            each app its own object.
        :raises ConfigError: if a key has a value of the wrong type or out of
            range (a ``ValueError`` naming the key and what it accepts).
        :raises RuntimeError: if the extension is already registered with
            ``app``, or if the store given to :class:`Jobify` already serves
            another app.
        """
        if "jobify" in app.extensions:
            raise RuntimeError(
                "Flask-Jobify is already registered with this app: call"
                " init_app() once per app, or use a new Flask app."
            )
        if store is None and self._store is not None and self._store_taken_by is None:
            store = self._store  # the first app takes the constructor's store
        elif store is None and self._store is not None and app.config.get("JOBIFY_STORE") is None:
            raise RuntimeError(
                f"The store given to Jobify(store=...) already serves app"
                f" {self._store_taken_by!r}, and a store object serves one app. Give this"
                " app its own with init_app(app, store=...), or set its JOBIFY_STORE."
            )
        serves = getattr(store, _STORE_APP_ATTR, None)
        if serves is not None:
            raise RuntimeError(
                f"This store instance already serves app {serves!r}, and a store object"
                " serves one app: give each app a store of its own."
            )
        settings = Settings.from_app(app)
        state = JobifyState(app, settings, store=store, load_owner=self.load_owner,
                            load_callback_secret=self.load_callback_secret,
                            require_admin=self.require_admin)
        if store is not None:
            setattr(store, _STORE_APP_ATTR, app.name)
        if store is not None and store is self._store:
            self._store_taken_by = app.name
        state.request_filters = self._request_filters
        app.extensions["jobify"] = state
        jobs_blueprint = create_jobs_blueprint()
        add_spec_routes(jobs_blueprint, settings)
        add_event_routes(jobs_blueprint)  # issue 17: event streams and client.js
        app.register_blueprint(jobs_blueprint, url_prefix=settings.url_prefix)
        if settings.dashboard:  # issue 17: the dashboard, {prefix}/ui
            app.register_blueprint(create_dashboard_blueprint(),
                                   url_prefix=settings.url_prefix + "/ui")
        app.before_request(self._before_request)
        app.after_request(self._after_request)
        _shutdown_at_exit(state)
        state.start_sweeps()
        state.on_stop_signals()

    # -- public API ------------------------------------------------------------
    @t.overload
    def job(self, view: F) -> F: ...

    @t.overload
    def job(
        self, view: None = None, *, timeout: float | None = None,
        result_ttl: float | None = None, callback: str | None = None,
        callback_secret: str | bytes | None = None,
        retries: int = 0, backoff: float = 1.0, retryable: bool | None = None,
    ) -> t.Callable[[F], F]: ...

    def job(
        self,
        view: t.Callable[..., t.Any] | None = None,
        *,
        timeout: float | None = None,
        result_ttl: float | None = None,
        callback: str | None = None,
        callback_secret: str | bytes | None = None,
        retries: int = 0,
        backoff: float = 1.0,
        retryable: bool | None = None,
    ) -> t.Any:
        """Make a view jobifiable: it runs as a job when the client asks.

        Use it below ``@app.route`` and below decorators that guard the view
        (``@login_required``), so that those run before a job is accepted::

            @app.post("/reports")
            @login_required
            @jobify.job(timeout=600)
            def make_report(): ...

        :param timeout: seconds each run of the job may take
            (``JOBIFY_DEFAULT_TIMEOUT``).
        :param result_ttl: seconds the finished job is kept
            (``JOBIFY_RESULT_TTL``).
        :param callback: webhook URL called when a job ends, unless the
            request names one with ``X-Job-Callback``.
        :param callback_secret: the secret shared with the ``callback``
            receiver alone, to sign webhooks sent to that URL instead of
            ``JOBIFY_WEBHOOK_SECRET``. A URL the request names is never
            signed with it. It stays in this process (never stored).
        :param retries: runs after the first when a run raises or answers
            5xx, or its process dies. A timed-out or cancelled job is not
            run again.
        :param backoff: seconds before the first retry, doubled for each
            next one (with jitter, up to ``JOBIFY_RETRY_MAX_BACKOFF``).
        :param retryable: whether the operation may run more than once.
            By default only idempotent methods (``GET``, ``PUT``,
            ``DELETE``...) are retried: a ``POST`` that creates something
            is not run twice unless you say so with ``retryable=True``.
        """
        options = JobOptions(timeout=timeout, result_ttl=result_ttl, callback=callback,
                             callback_secret=callback_secret, retries=retries,
                             backoff=backoff, retryable=retryable)

        def decorator(func: F) -> F:
            return t.cast(F, self._wrap(func, options))

        return decorator(view) if view is not None else decorator

    def init_celery(
        self, celery_app: celery.Celery, app: Flask | None = None, *, queue: str | None = None
    ) -> None:
        """Run the jobs of ``app`` on ``celery_app``'s workers
        (``JOBIFY_EXECUTOR = "celery"``).

        Call it where both apps are made, in a module that the web servers
        and the Celery workers both import, so that the task it registers
        (``flask_jobify.run_job.<app name>``) exists on both sides::

            app = Flask(__name__)
            app.config["JOBIFY_STORE"] = "redis://localhost:6379/0"
            app.config["JOBIFY_EXECUTOR"] = "celery"
            jobify = Jobify(app)
            celery_app = Celery(__name__, broker="redis://localhost:6379/1")
            jobify.init_celery(celery_app, app)

        The store must be shared across processes (Redis, or SQLite for
        workers on the same machine).

        :param celery_app: the Celery app.
        :param app: the Flask app (default: the current app).
        :param queue: the Celery queue the jobs go to (default: Celery's).

        .. versionadded:: 0.1
        """
        from .celery_executor import CeleryExecutor

        state = self.get_state(app)
        if state.settings.executor != "celery":
            raise RuntimeError(
                "init_celery() needs JOBIFY_EXECUTOR = 'celery' in the app's config."
            )
        if not state.store.shared_across_processes:
            raise RuntimeError(
                "Celery workers cannot see this store: set JOBIFY_STORE to redis://..."
                " (or sqlite:///... for workers on this machine)."
            )
        state.celery = CeleryExecutor(state, celery_app, queue=queue)
        _start_in_worker_processes(state)

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
        machine to an app in debug mode; others get ``403 access_denied``.
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

    def register_api(self, api: Api, app: Flask | None = None) -> None:
        """Document the jobs endpoints in a flask-smorest ``Api``'s spec, and
        give every jobifiable operation in it the ``X-Job-Flag`` and
        ``Prefer`` header parameters and the ``202``/``400``/``503``
        responses. Operations registered with the Api before or after this
        call are both covered::

            api = Api(app)
            jobify = Jobify(app)
            jobify.register_api(api)
            api.register_blueprint(reports)

        Without an ``Api``, the spec is served at
        ``{JOBIFY_URL_PREFIX}/openapi.json``.

        :param api: an ``Api`` already registered with the app.
        :param app: the Api's app (default: the one it was initialised with).

        .. versionadded:: 0.1
        """
        app = app if app is not None else getattr(api, "_app", None)
        register_api(app if app is not None else current_app._get_current_object(),  # type: ignore[attr-defined]
                     self.get_state(app), api)

    def get_state(self, app: Flask | None = None) -> JobifyState:
        """The Flask-Jobify state of ``app`` (default: the current app)."""
        app = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        try:
            return t.cast("JobifyState", app.extensions["jobify"])
        except KeyError:
            raise RuntimeError(
                "Flask-Jobify is not registered with this app. Did you forget"
                " to call init_app()?"
            ) from None

    def start(self, app: Flask | None = None) -> None:
        """Start this process's background work now: sweeping expired jobs,
        renewing the leases of its jobs and recovering jobs whose process
        died. It starts by itself at a process's first request or job; call
        this from a server's worker-boot hook so that a worker takes part
        from its start (gunicorn ``post_worker_init``, uWSGI ``@postfork``).
        Celery worker processes are started by :meth:`init_celery`.

        .. versionadded:: 0.1
        """
        self.get_state(app).start()

    def shutdown(self, app: Flask | None = None, grace: float | None = None) -> None:
        """Stop accepting jobs and wind down, as at interpreter exit: give
        running jobs ``grace`` seconds (``JOBIFY_SHUTDOWN_GRACE``), then fail
        what did not finish (error type ``shutdown``) and release queued
        jobs another process may run. Once per process; call it from a
        server's worker-exit hook (gunicorn ``worker_exit``), and in a test
        suite's app fixture teardown, which also ends the app's threads at
        once (a dropped app's end when it is garbage-collected)."""
        self.get_state(app).shutdown(grace)

    def begin_shutdown(self, app: Flask | None = None) -> None:
        """Refuse new jobs and end waiting long-polls now, without waiting
        for anything; :meth:`shutdown` does the rest. The stop signals do
        this by themselves; call it where a server stops a worker without
        one: gunicorn ``--max-requests`` recycling, from ``post_request``
        when ``worker.alive`` is false.

        .. versionadded:: 0.1
        """
        self.get_state(app).begin_shutdown()

    # -- request handling --------------------------------------------------------
    def _wrap(self, view: t.Callable[..., t.Any], options: JobOptions) -> t.Callable[..., t.Any]:
        @functools.wraps(view)
        def jobified(*args: t.Any, **kwargs: t.Any) -> t.Any:
            response = self._maybe_accept(options)
            if response is not None:
                return response
            return current_app.ensure_sync(view)(*args, **kwargs)

        setattr(jobified, OPTIONS_ATTR, options)
        return jobified

    def _maybe_accept(self, options: JobOptions) -> WerkzeugResponse | None:
        """Accept the current request as a job if it asks to be one."""
        g._jobify_vary = True
        if job_of_request() is not None:
            return None  # this is the job's own run
        try:
            trigger = parse_trigger(request.headers)
        except InvalidJobFlag as exc:
            return exc.get_response()
        if trigger is None:
            return None
        return self._accept(self.get_state(), trigger, options)

    def _accept(
        self, state: JobifyState, trigger: JobTrigger, options: JobOptions
    ) -> WerkzeugResponse:
        retry_after = {"Retry-After": str(state.settings.retry_after)}
        if state.closed:
            return ShuttingDown(headers=retry_after).get_response()
        try:
            return self._submit(state, trigger, options, retry_after)
        except JobifyHTTPError as exc:
            return exc.get_response()
        except StoreError:
            current_app.logger.exception("Flask-Jobify could not store a job")
            return StoreUnavailable(headers=retry_after).get_response()

    def _submit(
        self, state: JobifyState, trigger: JobTrigger, options: JobOptions,
        retry_after: dict[str, str],
    ) -> WerkzeugResponse:
        owner = self.load_owner()
        try:
            captured = state.capture_filtered(
                capture_request(request, spool_threshold=state.settings.spool_threshold))
        except RequestEntityTooLarge:
            return ContentTooLarge(
                "The request's content is longer than this server's MAX_CONTENT_LENGTH.",
            ).get_response()
        try:
            callback = request.headers.get(CALLBACK_HEADER) or options.callback
            meta = callback_meta(callback, request.url_root)
            key = idempotency_key(request.headers)
            job_id = new_job_id() if key is None else job_id_for_key(
                secret_of(current_app.secret_key), owner, key,
                credentials="" if owner is not None else credentials_digest(
                    request.headers, state.settings.drop_headers),
                app=state.name,
            )
        except JobifyHTTPError as exc:
            return exc.get_response()
        job = Job(
            id=job_id,
            operation=request.endpoint or "",
            method=request.method,
            path=request.path,
            result_ttl=state.result_ttl_of(options),
            owner=owner,
            app=state.name,
            meta=meta,
        )
        try:
            state.webhooks.check_callback(job)
            state.prepare(job, captured, options)
        except JobifyHTTPError as exc:
            return exc.get_response()
        if key is None:
            outcome: tuple[Job, bool] | None = (
                (job, True) if state.submit(job, captured, options) else None
            )
        else:
            print_ = fingerprint(request.method, request.path,
                                 request.query_string.decode("latin-1"), captured.body)
            try:
                outcome = submit_once(state, job, captured, options, print_)
            except IdempotencyMismatch as exc:
                return exc.get_response()
        if outcome is None:
            return QueueFull(headers=retry_after).get_response()
        job, created = outcome
        if created:
            job_accepted.send(current_app._get_current_object(), job=job)  # type: ignore[attr-defined]
        longest, capped = max_wait(state, request.environ)
        if trigger.wait and longest > 0:
            finished = _wait_until_final(state, job, min(trigger.wait, longest))
            stored = state.store.get_result(job.id) if finished else None
            if stored is not None:
                return replay_response(stored, request.environ,
                                       response_class=current_app.response_class,
                                       head_only=job.method == "HEAD")
        response = _accepted_response(job, trigger, retry_after, replayed=not created)
        if capped and trigger.wait and trigger.wait > longest:
            response.headers[MAX_WAIT_HEADER] = f"{longest:g}"
        return response

    def _before_request(self) -> WerkzeugResponse | None:
        state = self.get_state()
        routing_error = request.routing_exception
        if routing_error is not None:
            prefix = state.settings.url_prefix
            # Under the jobs prefix every answer is JSON: an unknown path, a
            # wrong method, a bad Host header, a redirect to a merged slash.
            if isinstance(routing_error, HTTPException) and (
                request.path == prefix or request.path.startswith(prefix.rstrip("/") + "/")
            ):
                return http_exception_response(routing_error)
            return None
        state.start()
        if state.settings.all_views:
            self._wrap_all_views(state)
        return None

    def _after_request(self, response: Response) -> Response:
        if g.get("_jobify_vary"):
            for header in VARY_HEADERS:
                response.vary.add(header)
        return response

    def _wrap_all_views(self, state: JobifyState) -> None:
        """Make every view jobifiable (``JOBIFY_ALL_VIEWS``), once per app.

        Done at the first request: Flask refuses new routes after it, so
        every view is known by then. The jobs blueprint and static files
        are left alone, and so are views that look decorated
        (:func:`~flask_jobify.options.looks_decorated`): a wrapper around a
        ``@login_required`` view would accept a job before the guard runs,
        so they stay synchronous, with one
        :class:`~flask_jobify.errors.ConfigWarning` that names them.
        """
        if state.all_views_wrapped:
            return
        with state.wrap_lock:
            if state.all_views_wrapped:
                return
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            options = JobOptions()
            skipped = []
            for endpoint, view in list(app.view_functions.items()):
                if endpoint == "static" or endpoint.startswith("jobify.") or options_of(view):
                    continue
                if looks_decorated(view):
                    skipped.append(endpoint)
                    continue
                app.view_functions[endpoint] = self._wrap(view, options)
            state.all_views_wrapped = True
        if skipped:
            warnings.warn(
                "JOBIFY_ALL_VIEWS leaves these decorated views synchronous, because their"
                " decorators (a guard such as @login_required) must run before a job is"
                f" accepted: {', '.join(sorted(skipped))}. Put @jobify.job below the"
                " decorators of those that should run as jobs.",
                ConfigWarning, stacklevel=2)


def _wait_until_final(state: JobifyState, job: Job, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``job`` to end; ``False`` at once when
    the process stops meanwhile."""
    deadline = time.monotonic() + seconds
    current: Job | None = job
    while current is not None and not current.is_final:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or state.stopping:
            return False
        current = wait_while_serving(
            state, functools.partial(state.store.wait, job.id), current, remaining)
    return current is not None


def _accepted_response(
    job: Job, trigger: JobTrigger, headers: dict[str, str], *, replayed: bool = False
) -> Response:
    # A replayed Idempotency-Key gets the very body the first request got.
    body = _ACCEPTED_SCHEMA.dump(job if not replayed else dataclasses.replace(
        job, status=JobStatus.PENDING))
    response = Response(json.dumps(body), status=202, mimetype="application/json")
    response.headers.update(headers)
    response.headers["Location"] = url_for("jobify.job_status", job_id=job.id)
    response.headers[JOB_FLAG_HEADER] = "ON"
    response.headers[JOB_ID_HEADER] = job.id
    if trigger.via == "prefer":
        response.headers["Preference-Applied"] = "respond-async"
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _start_in_worker_processes(state: JobifyState) -> None:
    """Start ``state``'s background work in every Celery worker process as
    it boots (Celery's ``worker_process_init``; ``worker_init`` for the
    solo and thread pools, which run tasks in the worker itself)."""
    from celery import signals

    ref = weakref.ref(state)

    def start(**kwargs: t.Any) -> None:
        alive = ref()
        if alive is not None:
            alive.start()

    signals.worker_process_init.connect(start, weak=False)
    signals.worker_init.connect(start, weak=False)


def _shutdown_at_exit(state: JobifyState) -> None:
    """Wind ``state`` down at interpreter exit, and at uWSGI's worker
    exit (``uwsgi.atexit``), without keeping it alive."""
    at_uwsgi_exit(state)
    ref = weakref.ref(state)

    def shutdown() -> None:
        alive = ref()
        if alive is not None:
            alive.shutdown()

    atexit.register(shutdown)
