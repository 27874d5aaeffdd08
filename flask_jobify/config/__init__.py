"""Configuration: the ``JOBIFY_*`` keys (declared in
:mod:`flask_jobify.config.keys`, each one's default and rule) and
:class:`Settings`, which holds them once read: :meth:`Settings.from_app`
applies the rules at ``init_app``, warns about unknown keys (typos), and
:meth:`Settings.warn_if_changed` tells when a key changed after it was
read. Nothing else in the extension reads ``app.config``.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import sys
import types
import typing as t
import warnings

from ..errors import ConfigError, ConfigWarning
from ..rules import Key
from . import keys

if t.TYPE_CHECKING:
    from flask import Flask

#: Prefix of every config key of the extension.
PREFIX = "JOBIFY_"

#: Every key, by name without the prefix, as declared in :mod:`flask_jobify.config.keys`.
KEYS: t.Mapping[str, Key] = types.MappingProxyType(
    {name: value for name, value in vars(keys).items() if isinstance(value, Key)}
)

#: The package's folder: warnings skip its frames (subpackages too).
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Settings:
    """The ``JOBIFY_*`` config keys of one app, coerced and checked once at
    ``init_app`` (:meth:`from_app`). One field per key, in lower case."""

    store: str
    redis_prefix: str
    max_workers: int
    max_queued: int
    max_running_per_owner: int | None
    max_wait: float
    blocking_max_wait: float
    result_ttl: float
    default_timeout: float | None
    retry_after: int
    all_views: bool
    url_prefix: str
    shutdown_grace: float
    cleanup_interval: float
    cancel_check_interval: float
    expose_errors: bool
    drop_headers: tuple[str, ...]
    executor: str
    lease_seconds: float
    retry_max_backoff: float
    swagger_ui: bool
    swagger_ui_url: str
    webhook_secret: str | None
    webhook_max_attempts: int
    webhook_backoff: float
    webhook_max_backoff: float
    webhook_timeout: float
    webhook_workers: int
    webhook_allowed_hosts: tuple[str, ...]
    result_cookies: str
    store_retry_seconds: float
    spool_threshold: int
    max_saved_body: int
    keep_failed_requests: bool
    metrics: bool
    see_other: bool
    auto_register_api: bool
    sse_max_streams: int
    sse_keepalive: float
    sse_max_seconds: float
    sse_feed_interval: float
    dashboard: bool
    #: The coerced value of each key as read, by full key, before ``None``
    #: was worked out (``STORE``, ``EXPOSE_ERRORS``): what
    #: :meth:`changed_keys` compares the config with.
    read: t.Mapping[str, t.Any] = dataclasses.field(
        default_factory=dict, repr=False, compare=False)
    #: The unknown ``JOBIFY_*`` keys :meth:`from_app` warned about.
    unknown: frozenset[str] = dataclasses.field(
        default=frozenset(), repr=False, compare=False)

    @classmethod
    def from_app(cls, app: Flask) -> Settings:
        """Read every ``JOBIFY_*`` key of ``app``: set the missing ones to
        their defaults, coerce and check each value, and write the coerced
        value back to ``app.config``. Unknown ``JOBIFY_*`` keys get a
        :class:`~flask_jobify.errors.ConfigWarning` that suggests the
        closest known key.

        ``JOBIFY_STORE = None`` becomes an SQLite file in the app's instance
        folder; ``JOBIFY_EXPOSE_ERRORS = None`` becomes ``app.debug``.

        :raises ConfigError: for the first key whose value breaks its rule
            (a ``ValueError``; its message names the key and what it accepts).
        """
        read: dict[str, t.Any] = {}
        for name, key in KEYS.items():
            full = PREFIX + name
            read[full] = app.config[full] = key.read(full, app.config.get(full, key.default))
        unknown = unknown_keys(app.config)
        for message in unknown.values():
            warnings.warn(message, ConfigWarning, stacklevel=_caller_stacklevel())
        values = {full[len(PREFIX):].lower(): value for full, value in read.items()}
        if values["store"] is None:
            values["store"] = "sqlite:///" + os.path.join(app.instance_path, "jobify.sqlite3")
        if values["expose_errors"] is None:
            values["expose_errors"] = bool(app.debug)
        return cls(**values, read=types.MappingProxyType(read), unknown=frozenset(unknown))

    def changed_keys(self, config: t.Mapping[str, t.Any]) -> list[str]:
        """The keys whose value in ``config`` is no longer the one read (or
        no longer valid, or removed), compared after coercion: ``"8"``
        for ``8`` is no change."""
        changed = []
        for full, was in self.read.items():
            if full not in config:
                changed.append(full)
                continue
            try:
                now = KEYS[full[len(PREFIX):]].read(full, config[full])
            except ConfigError:
                now = dataclasses.MISSING
            if now != was:
                changed.append(full)
        return changed

    def warn_if_changed(self, config: t.Mapping[str, t.Any]) -> None:
        """Warn (:class:`~flask_jobify.errors.ConfigWarning`) about each key
        changed since :meth:`from_app` read it, and each unknown key added
        since: both are ignored. Meant to run once per process, at its first request or
        job, not on every request."""
        for full in self.changed_keys(config):
            warnings.warn(
                f"{full} was changed after Jobify.init_app() read it; the change is"
                " ignored. Set JOBIFY_* keys before Jobify(app) or init_app(app).",
                ConfigWarning, stacklevel=2)
        for full, message in unknown_keys(config).items():
            if full not in self.unknown:
                warnings.warn(message, ConfigWarning, stacklevel=2)


def unknown_keys(config: t.Mapping[str, t.Any]) -> dict[str, str]:
    """Each ``JOBIFY_*`` key of ``config`` that no setting has, with a
    message that names the closest known key when one is close (a typo)."""
    messages = {}
    for full in config:
        if not isinstance(full, str) or not full.startswith(PREFIX) or full[len(PREFIX):] in KEYS:
            continue
        close = difflib.get_close_matches(full[len(PREFIX):], KEYS, n=1)
        hint = f" Did you mean {PREFIX}{close[0]}?" if close else ""
        messages[full] = f"{full} is not a Flask-Jobify config key and is ignored.{hint}"
    return messages


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside Flask-Jobify, so that a
    warning points at the app's ``Jobify(app)`` or ``init_app(app)`` line."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
            _PACKAGE_DIR + os.sep):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


__all__ = [
    "KEYS",
    "PREFIX",
    "Settings",
    "unknown_keys",
]
