"""The one check for numbers of seconds, and the one way user input is quoted in messages.

Every timeout, interval, backoff and deadline a user can set goes through :func:`seconds`, at the time
the object that holds it is built: a task when the DAG is parsed, the hook, the retry policy, the
trigger, the connection when it is read. NaN and infinity are refused everywhere (``nan > 0`` is
``False`` and ``inf`` never times out, so both slip through a plain ``value > 0``).

:func:`quote` is how any value a user gave is put into a message: cut to a fixed length *before*
``repr`` does its work on the whole value, so a 10 MB id costs a 10 MB message nowhere.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError

#: Longest quoted value in a message, in characters.
QUOTE_LIMIT = 80
#: How many items of a list or mapping a message shows.
_ITEMS_SHOWN = 3


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)``, cut to about ``limit`` characters without ever building the whole of it.

    Strings and bytes are cut before ``repr``. A list, tuple or mapping shows its first few items, each
    quoted the same way, and how many there are (``['p']``, ``{'epochs': 3}``); other objects are named
    by type, since their ``repr`` could cost more than the message is worth.

    :param value: what the user passed.
    :param limit: the longest quoted string or number, in characters.
    """
    if isinstance(value, str | bytes):
        if len(value) <= limit:
            return repr(value)
        return repr(value[:limit]) + f"... ({len(value):,} characters)"
    if value is None or isinstance(value, bool | int | float):
        text = repr(value)
        return text if len(text) <= limit else text[:limit] + "..."
    if isinstance(value, Mapping):
        items = [
            f"{quote(key, 30)}: {quote(item, 30)}"
            for key, item in itertools.islice(value.items(), _ITEMS_SHOWN)
        ]
        opening, closing = "{", "}"
    elif isinstance(value, list | tuple):
        items = [quote(item, 30) for item in itertools.islice(value, _ITEMS_SHOWN)]
        opening, closing = ("[", "]") if isinstance(value, list) else ("(", ",)" if len(value) == 1 else ")")
    elif isinstance(value, set | frozenset):
        return f"a {type(value).__name__} of {len(value):,} item(s)"
    else:
        return f"a {type(value).__name__}"
    if len(value) > _ITEMS_SHOWN:
        items.append(f"... ({len(value):,} items)")
    return opening + ", ".join(items) + closing


def seconds_problem(
    name: str, value: object, *, optional: bool = False, allow_zero: bool = False, text_ok: bool = False
) -> str | None:
    """What is wrong with ``value`` as a number of seconds, or ``None`` if it is fine.

    For callers that report several problems at once; :func:`seconds` raises the first.

    :param name: the parameter's name as the user wrote it, for the message.
    :param value: what the user passed.
    :param optional: whether ``None`` is allowed.
    :param allow_zero: whether ``0`` is allowed (a backoff may be zero; a timeout may not).
    :param text_ok: whether a numeric string such as ``"30"`` is accepted (connection extras are text).
    """
    if value is None and optional:
        return None
    number = _as_number(value, text_ok)
    if number is not None and math.isfinite(number) and (number > 0 or (allow_zero and number == 0)):
        return None
    kind = "a number of seconds, 0 or more" if allow_zero else "a positive number of seconds"
    infinite = number is not None and not math.isfinite(number)
    return f"{name} must be {kind}, got {quote(value)}" + (
        " (NaN and infinity never end a wait)" if infinite else ""
    )


def seconds(
    name: str,
    value: object,
    *,
    allow_zero: bool = False,
    text_ok: bool = False,
    where: str = "",
    fix: str = "",
) -> float:
    """Check a number of seconds and return it as a float.

    :param name: the parameter's name as the user wrote it, for the message.
    :param value: what the user passed.
    :param allow_zero: whether ``0`` is allowed (a backoff may be zero; a timeout may not).
    :param text_ok: whether a numeric string such as ``"30"`` is accepted (connection extras are text).
    :param where: what holds the value (``"Airflow connection 'x'"``), put before the message.
    :param fix: a sentence saying what to write instead; a default one names a valid value.
    :raises ClarifaiConfigurationError: not a finite number, negative, or zero when zero is not allowed.
    """
    fix = fix or "Pass a number such as 30."
    checked = optional_seconds(name, value, allow_zero=allow_zero, text_ok=text_ok, where=where, fix=fix)
    if checked is None:
        raise _error(f"{name} must be a number of seconds, got None", where, fix)
    return checked


def optional_seconds(
    name: str,
    value: object,
    *,
    allow_zero: bool = False,
    text_ok: bool = False,
    where: str = "",
    fix: str = "",
) -> float | None:
    """Like :func:`seconds`, where ``None`` (no limit) is allowed and returned as is.

    :param name: the parameter's name as the user wrote it, for the message.
    :param value: what the user passed.
    :param allow_zero: whether ``0`` is allowed.
    :param text_ok: whether a numeric string such as ``"30"`` is accepted.
    :param where: what holds the value, put before the message.
    :param fix: a sentence saying what to write instead.
    :raises ClarifaiConfigurationError: not ``None`` and not a valid number of seconds.
    """
    if value is None:
        return None
    problem = seconds_problem(name, value, allow_zero=allow_zero, text_ok=text_ok)
    if problem is not None:
        raise _error(problem, where, fix or "Pass a number such as 30, or None.")
    return _as_number(value, text_ok)


def _error(problem: str, where: str, fix: str) -> ClarifaiConfigurationError:
    prefix = f"{where}: " if where else ""
    return ClarifaiConfigurationError(f"{prefix}{problem}. {fix}")


def _as_number(value: object, text_ok: bool) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if text_ok and isinstance(value, str) and len(value) <= 64:
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None
