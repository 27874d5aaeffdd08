"""Rules that coerce and check the value of one config key.

:mod:`flask_jobify.config` declares each ``JOBIFY_*`` key as a :class:`Key`:
its default and its rule, side by side. A rule turns what a config file or
an environment variable gives (``8``, ``"8"``, ``"true"``,
``"authorization, cookie"``) into the one type the extension uses, or
raises :class:`~flask_jobify.errors.ConfigError` naming the key and what it
accepts.

Strings are coerced, because ``app.config.from_envvar``, ``from_mapping``
and ``os.environ`` give strings: ``"30"`` is a number, ``"true"`` a boolean,
``"a, b"`` a list. Other types are not: ``True`` is not an integer and
``1`` is not a boolean.

.. versionadded:: 0.1
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing as t
from urllib.parse import urlsplit

from .errors import ConfigError

#: Strings that mean ``True``, then ``False`` (compared in lower case).
TRUE_STRINGS = frozenset({"true", "1", "yes", "on"})
FALSE_STRINGS = frozenset({"false", "0", "no", "off"})
#: Strings that mean ``None`` for keys that accept ``None``.
NONE_STRINGS = frozenset({"", "none", "null"})

_INT = re.compile(r"[+-]?[0-9]{1,30}")
#: The longest time any seconds key may hold: ten years. Longer ones break
#: what uses them (dates past year 9999, ``threading.TIMEOUT_MAX``).
MAX_SECONDS = 10 * 365 * 24 * 3600.0
#: An HTTP field name (RFC 9110 ``token``).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
#: A host name or an IP literal (IPv6 with or without brackets).
_HOST = re.compile(r"[a-z0-9._\-:\[\]%]+")


class _Refused(Exception):
    """The value breaks the rule; the rule's description says why."""


@dataclasses.dataclass(frozen=True, repr=False)
class Rule:
    """Coerce and check one value. Subclasses implement :meth:`coerce` and
    :meth:`describe`; :meth:`check` adds ``None`` handling and the error."""

    #: ``None`` (or the strings ``""``, ``"none"``, ``"null"``) is accepted.
    optional: bool = False

    def check(self, key: str, value: t.Any, *, secret: bool = False) -> t.Any:
        """Return ``value`` coerced to the rule's type.

        :param key: the full config key, for the error message.
        :param secret: say only the value's type in the error, never the value.
        :raises ConfigError: if ``value`` breaks the rule.
        """
        if self.optional and (value is None or (
                isinstance(value, str) and value.strip().lower() in NONE_STRINGS)):
            return None
        try:
            return self.coerce(value)
        except (_Refused, ValueError, OverflowError):  # int("1" * 5000), float(10**400)
            expected = self.describe() + (", or None" if self.optional else "")
            raise ConfigError(key, expected, value, secret=secret) from None

    def coerce(self, value: t.Any) -> t.Any:
        raise NotImplementedError

    def __repr__(self) -> str:  # only what differs from the defaults: Int(min=1)
        shown = [f"{field.name}={getattr(self, field.name)!r}"
                 for field in dataclasses.fields(self)
                 if getattr(self, field.name) != field.default]
        return f"{type(self).__name__}({', '.join(shown)})"

    def describe(self) -> str:
        """What the rule accepts, in words: ``"an integer >= 1"``."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True, repr=False)
class Int(Rule):
    """An integer, at least ``min``. From a string: ``"8"``."""

    min: int = 0

    def coerce(self, value: t.Any) -> int:
        if isinstance(value, str) and _INT.fullmatch(value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < self.min:
            raise _Refused
        return value

    def describe(self) -> str:
        return f"an integer >= {self.min}"


@dataclasses.dataclass(frozen=True, repr=False)
class Seconds(Rule):
    """A finite number of seconds (``int`` or ``float``), returned as a
    ``float``: at least ``min``, or above it when ``positive``, and at most
    :data:`MAX_SECONDS` (ten years). From a string: ``"2.5"``."""

    min: float = 0.0
    positive: bool = False

    def coerce(self, value: t.Any) -> float:
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise _Refused from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Refused
        seconds = float(value)
        if (not math.isfinite(seconds) or seconds < self.min or seconds > MAX_SECONDS
                or (self.positive and seconds <= self.min)):
            raise _Refused
        return seconds

    def describe(self) -> str:
        return (f"a number of seconds {'>' if self.positive else '>='} {self.min:g}"
                f" and <= {MAX_SECONDS:g} (ten years)")


@dataclasses.dataclass(frozen=True, repr=False)
class Bool(Rule):
    """``True`` or ``False``. From a string: ``true``/``false``, ``1``/``0``,
    ``yes``/``no``, ``on``/``off``, in any case."""

    def coerce(self, value: t.Any) -> bool:
        if isinstance(value, str):
            word = value.strip().lower()
            if word in TRUE_STRINGS:
                return True
            if word in FALSE_STRINGS:
                return False
        if not isinstance(value, bool):
            raise _Refused
        return value

    def describe(self) -> str:
        return "True or False (or the string true/false, 1/0, yes/no, on/off)"


@dataclasses.dataclass(frozen=True, repr=False)
class Choice(Rule):
    """One of ``choices``, a string compared in lower case."""

    choices: tuple[str, ...] = ()

    def coerce(self, value: t.Any) -> str:
        if not isinstance(value, str) or value.strip().lower() not in self.choices:
            raise _Refused
        return value.strip().lower()

    def describe(self) -> str:
        return "one of " + ", ".join(repr(choice) for choice in self.choices)


@dataclasses.dataclass(frozen=True, repr=False)
class Text(Rule):
    """A non-empty string."""

    def coerce(self, value: t.Any) -> str:
        if not isinstance(value, str) or not value:
            raise _Refused
        return value

    def describe(self) -> str:
        return "a non-empty string"


@dataclasses.dataclass(frozen=True, repr=False)
class Url(Rule):
    """A URL with one of ``schemes``; with ``path_ok``, a path that starts
    with ``/`` too (an asset folder served by the app itself)."""

    schemes: tuple[str, ...] = ()
    path_ok: bool = False

    def coerce(self, value: t.Any) -> str:
        if not isinstance(value, str) or any(c.isspace() for c in value):
            raise _Refused
        if self.path_ok and value.startswith("/") and not value.startswith("//"):
            return value
        try:
            scheme = urlsplit(value).scheme.lower()
        except ValueError:
            raise _Refused from None
        if scheme not in self.schemes or "://" not in value:
            raise _Refused
        return value

    def describe(self) -> str:
        text = "a URL starting with " + " or ".join(f"{s}://" for s in self.schemes)
        return text + (", or a path starting with '/'" if self.path_ok else "")


@dataclasses.dataclass(frozen=True, repr=False)
class UrlPath(Rule):
    """A URL path that starts with ``/``: no scheme, host, query or fragment."""

    def coerce(self, value: t.Any) -> str:
        if (not isinstance(value, str) or not value.startswith("/") or value.startswith("//")
                or value.rstrip("/") == "" or any(c.isspace() or c in "?#<>" for c in value)):
            raise _Refused
        return value

    def describe(self) -> str:
        return ("a path starting with '/', other than '/' (no query, fragment, spaces"
                " or <converters>)")


@dataclasses.dataclass(frozen=True, repr=False)
class Names(Rule):
    """A tuple of lower-case names of one ``kind`` (``"header"`` or
    ``"host"``), from a tuple, list or set of strings, or from one string
    of names separated by commas or spaces (``"authorization, cookie"``),
    never split into characters. Duplicates are dropped; host names lose a
    trailing dot."""

    kind: t.Literal["header", "host"] = "header"

    def coerce(self, value: t.Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = value.replace(",", " ").split()
        if not isinstance(value, (tuple, list, set, frozenset)):
            raise _Refused
        names: list[str] = []
        pattern = _HEADER_NAME if self.kind == "header" else _HOST
        for item in value:
            if not isinstance(item, str):
                raise _Refused
            name = item.strip().lower()
            if self.kind == "host":
                name = name.rstrip(".")
                if name.startswith("[") and name.endswith("]"):
                    name = name[1:-1]  # "[::1]": the address, as callbacks are compared
                elif name.count(":") == 1:
                    raise _Refused  # "host:port": hosts are allowed on every port
            if not pattern.fullmatch(name):
                raise _Refused
            if name not in names:
                names.append(name)
        return tuple(names)

    def describe(self) -> str:
        what = "header names" if self.kind == "header" else "host names or IP addresses"
        return f"a tuple of {what} (or one string of them separated by commas or spaces)"


@dataclasses.dataclass(frozen=True)
class Key:
    """One ``JOBIFY_*`` config key: its default and its :class:`Rule`.

    A default of ``None`` goes with an optional rule; it may stand for
    "worked out at ``init_app``", like ``STORE``'s SQLite file.
    """

    default: t.Any
    rule: Rule
    #: Never show the value in an error message.
    secret: bool = False

    def read(self, key: str, value: t.Any) -> t.Any:
        """Return ``value`` coerced by the rule.

        :param key: the full config key, for the error message.
        :raises ConfigError: if ``value`` breaks the rule.
        """
        return self.rule.check(key, value, secret=self.secret)

    def __repr__(self) -> str:  # shown in the docs as the key's value
        return f"Key({self.default!r}, {self.rule!r})"


__all__ = [
    "FALSE_STRINGS", "MAX_SECONDS", "NONE_STRINGS", "TRUE_STRINGS", "Bool", "Choice", "Int", "Key",
    "Names", "Rule", "Seconds", "Text", "Url", "UrlPath",
]
