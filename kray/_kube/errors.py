"""Translation of API-server and transport failures into :mod:`kray.store.errors` — the one edge.

The API server reports failures as a ``Status`` object (HTTP status, ``reason``, ``details.causes``),
in the response body or as the ``ERROR`` event of a watch. :func:`error_from_status` maps one to
the store error a controller handles; :func:`map_errors` wraps every request, so no caller ever sees
``httpx2`` or ``lightkube`` exceptions:

* 404 NotFound, or KindNotServed when the server has no such resource at all (a CRD not installed:
  its Status names no object, "the server could not find the requested resource");
* 409 AlreadyExists or Conflict (by ``reason``); 410 Gone; 403/401 Forbidden;
* 422 Invalid, with one FieldError per cause (``field`` is the path, as kray's own validation);
* 400 Invalid: ``fieldValidation=Strict`` refusals ("unknown field") become FieldErrors too;
* 504 "Too large resource version" Gone (a watch from a version the server has not reached: relist);
* anything else, and transport failures (connect, read, timeouts), Unavailable: retry later.

:func:`retry_after` tells the request path when the server asked for a retry (429 TooManyRequests,
or a 5xx, with ``Retry-After: <seconds>`` — API Priority and Fairness and a starting apiserver do
this): client-go then waits and re-sends the same request, and so does
:class:`~kray._kube.store.KubeStore`, a bounded number of times.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import httpx2

from kray.api.errors import FieldError
from kray.store.errors import (
    AlreadyExists,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    KindNotServed,
    NotFound,
    StoreError,
    Unavailable,
)

_UNKNOWN_FIELD = re.compile(r'unknown field "([^"]+)"')
_NO_RESOURCE = "the server could not find the requested resource"


def _field_errors(status: Mapping[str, Any]) -> list[FieldError]:
    details = status.get("details")
    causes = details.get("causes") if isinstance(details, Mapping) else None
    errors = [
        FieldError(str(cause.get("field", "")), str(cause.get("message", "")))
        for cause in causes or []
        if isinstance(cause, Mapping) and cause.get("field") != "<nil>"  # "some rules were not checked"
    ]
    message = str(status.get("message", ""))
    errors += [
        FieldError(path, f'unknown field "{path.rpartition(".")[2]}"') for path in _UNKNOWN_FIELD.findall(message)
    ]
    return errors or [FieldError("", message)]


def error_from_status(status: Mapping[str, Any]) -> StoreError:
    """The store error of an API ``Status`` (a failed response's body, or a watch ERROR event)."""
    code = status.get("code")
    reason = status.get("reason")
    message = str(status.get("message") or reason or f"HTTP {code}")
    if code == 404:
        details = status.get("details")
        named = isinstance(details, Mapping) and bool(details.get("name"))
        return NotFound(message) if named or _NO_RESOURCE not in message else KindNotServed(message)
    if code == 409:
        return AlreadyExists(message) if reason == "AlreadyExists" else Conflict(message)
    if code == 410:
        return Gone(message)
    if code in (401, 403):
        return Forbidden(message)
    if code in (400, 422):
        return Invalid(message, _field_errors(status))
    if code == 504 and "too large resource version" in message.lower():
        return Gone(message)
    return Unavailable(message)


def retry_after(response: httpx2.Response) -> float | None:
    """Seconds the server asked us to wait before re-sending, or None when it did not ask.

    As client-go: only for 429 and 5xx, and only a whole number of seconds (an HTTP-date or junk
    is no request to retry).
    """
    if response.status_code != 429 and not 500 <= response.status_code <= 599:
        return None
    value = response.headers.get("Retry-After", "").strip()
    if not value.isdigit():
        return None
    return float(int(value))


def error_from_response(response: httpx2.Response) -> StoreError:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, httpx2.ResponseNotRead):
        body = None
    if not isinstance(body, Mapping) or body.get("kind") != "Status":
        text = response.text[:200]
        if response.status_code == 404 and "page not found" in text:
            text = _NO_RESOURCE  # the mux's own answer: no handler serves that path
        body = {"code": response.status_code, "message": f"HTTP {response.status_code}: {text}"}
    return error_from_status({**body, "code": response.status_code})


@contextlib.contextmanager
def map_errors() -> Iterator[None]:
    """Re-raise httpx2 failures (HTTPStatusError, transport errors) as store errors, cause chained."""
    try:
        yield
    except httpx2.HTTPStatusError as exc:
        raise error_from_response(exc.response) from exc
    except httpx2.TransportError as exc:
        raise Unavailable(f"API server unreachable: {type(exc).__name__}: {exc}") from exc
