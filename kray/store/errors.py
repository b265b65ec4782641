"""Errors of the store boundary, the same for the embedded store and a Kubernetes API server.

* StoreError
  + NotFound          (404: no such object)
    + KindNotServed   (404: the server serves no such kind, e.g. a CRD that is not installed)
  + AlreadyExists     (409: create of a name that exists)
  + Conflict          (409: stale resourceVersion, or a precondition failed)
  + Invalid           (422: the object breaks the schema or an immutability rule; carries FieldErrors)
  + Gone              (410: a watch's resourceVersion is too old: relist)
  + Forbidden         (403)
  + Unavailable       (the backend cannot be reached; retry later)

Adapters translate their client's exceptions into these at the edge; controllers import only this
module.
"""

from __future__ import annotations

from collections.abc import Iterable

from kray.api.errors import FieldError


class StoreError(Exception):
    """Base of every store error."""


class NotFound(StoreError):
    pass


class KindNotServed(NotFound):
    """The API server has no such resource at all (its CRD is not installed), not merely no such object.

    A NotFound, so code that treats "absent" alike keeps doing so; code that must tell the two apart
    (the Gateway API objects of an incremental upgrade) catches this first."""


class AlreadyExists(StoreError):
    pass


class Conflict(StoreError):
    pass


class Invalid(StoreError):
    def __init__(self, message: str, errors: Iterable[FieldError] = ()) -> None:
        self.errors = tuple(errors)
        super().__init__(message)


class Gone(StoreError):
    pass


class Forbidden(StoreError):
    pass


class Unavailable(StoreError):
    pass
