"""The :class:`Jobify` extension."""
from __future__ import annotations

import typing as t

from flask import Flask, current_app

from .apidocs import add_spec_routes, watch_for_api
from .callbacks import AppCallbacks, OwnerLoader
from .cli import jobs_cli
from .config import Settings
from .dashboard import create_dashboard_blueprint
from .events import add_event_routes
from .hooks import after_request, before_request, jobified, render_errors
from .openapi import register_api
from .options import JobOptions
from .serving import shutdown_at_exit
from .state import JobifyState
from .stores.base import JobStore
from .views import create_jobs_blueprint

if t.TYPE_CHECKING:
    import celery
    from flask_smorest import Api

F = t.TypeVar("F", bound=t.Callable[..., t.Any])
#: Attribute a store instance carries once an app uses it: the app's name.
_STORE_APP_ATTR = "_jobify_app_name"


class Jobify(AppCallbacks):
    """Run Flask views as background jobs when the client asks.

    A request to a jobifiable view (decorated with :meth:`job`, or any view
    with ``JOBIFY_ALL_VIEWS``) that carries ``X-Job-Flag: ON`` or
    ``Prefer: respond-async`` is answered at once with ``202 Accepted``; the
    view runs in the background and its response is kept for
    ``GET /jobs/<id>/result``. Without the header the view runs as before.

    Configuration: the ``JOBIFY_*`` keys of :mod:`flask_jobify.config`
    (each one's default and rule), read once in :meth:`init_app`.
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
        #: Each execution queue's ``concurrency``, as the first operation
        #: naming it declared it (they must agree).
        self._queue_limits: dict[str, int | None] = {}
        super().__init__()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, *, store: JobStore | None = None) -> None:
        """Register the extension with ``app``: read the config, open the
        store, mount the jobs blueprint and add the request hooks.

        Every ``JOBIFY_*`` key is read, coerced and checked here, once
        (:meth:`Settings.from_app <flask_jobify.config.Settings.from_app>`):
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
        add_event_routes(jobs_blueprint, state)  # event streams and client.js
        app.register_blueprint(jobs_blueprint, url_prefix=settings.url_prefix)
        if settings.dashboard:  # the dashboard, {prefix}/ui
            app.register_blueprint(create_dashboard_blueprint(),
                                   url_prefix=settings.url_prefix + "/ui")
        app.cli.add_command(jobs_cli)  # flask jobs ...
        if settings.metrics:  # {prefix}/metrics (prometheus_client, imported only then)
            from .metrics import init_metrics

            init_metrics(app, settings.url_prefix)
        watch_for_api(app)  # a flask-smorest Api, now or later (JOBIFY_AUTO_REGISTER_API)
        app.before_request(before_request)
        app.after_request(after_request)
        render_errors(app)
        shutdown_at_exit(state)
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
        see_other: bool | None = None,
        queue: str | None = None, concurrency: int | None = None,
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
        see_other: bool | None = None,
        queue: str | None = None,
        concurrency: int | None = None,
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
        :param see_other: answer ``GET /jobs/<id>`` of a succeeded job with
            ``303 See Other`` to its result (``JOBIFY_SEE_OTHER``).
        :param queue: the execution queue the jobs go to (a name of letters,
            digits and ``_.:-``). With the Celery executor, jobs go to the
            Celery queue of that name (start workers with ``-Q``).
        :param concurrency: most jobs of ``queue`` that run at once, across
            every process sharing the store (Celery's word); the others wait
            ``pending``, oldest first, and start as slots free. A slot is
            given back when its job ends, or when its process dies, once its
            lease runs out (``JOBIFY_LEASE_SECONDS``). Give it wherever the
            queue is named, with the same value. See :mod:`flask_jobify.queues`.
        :raises ValueError: for an option out of range: ``concurrency`` below 1
            or without a ``queue``, a bad queue name, a ``concurrency`` other
            than one given for the same ``queue`` before.

        The client may shorten ``timeout``, pick a ``result_ttl`` within
        bounds and name a callback (see :mod:`flask_jobify.preferences`).
        """
        options = JobOptions(timeout=timeout, result_ttl=result_ttl, callback=callback,
                             callback_secret=callback_secret, retries=retries,
                             backoff=backoff, retryable=retryable, see_other=see_other,
                             queue=queue, concurrency=concurrency)
        if queue is not None:
            declared = self._queue_limits.setdefault(queue, concurrency)
            if declared != concurrency:
                raise ValueError(f"Queue {queue!r} was given concurrency={declared!r} by"
                                 f" another operation, and {concurrency!r} here: give every"
                                 " operation of a queue the same concurrency.")

        def decorator(func: F) -> F:
            return t.cast(F, jobified(func, options))

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
        :param queue: the Celery queue the jobs go to (default: Celery's), unless
            their operation names its own (``@jobify.job(queue=...)``).

        .. versionadded:: 0.1
        """
        from .celery_executor import CeleryExecutor, start_in_worker_processes

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
        settings = state.settings
        state.use_executor(CeleryExecutor(
            state.worker.run, celery_app, app_name=state.name, timeout_of=state.timeout_of,
            soft_margin=settings.cancel_check_interval + 1,
            hard_margin=settings.shutdown_grace + 1, queue=queue))
        start_in_worker_processes(state.start)

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
        ``{JOBIFY_URL_PREFIX}/openapi.json``. With one, this happens by
        itself at the next app context pushed (``JOBIFY_AUTO_REGISTER_API``,
        on by default): call it to register at once, or with that key off.

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


__all__ = [
    "Jobify", "OwnerLoader",
]
