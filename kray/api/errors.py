"""Errors of the API boundary: reading, checking and validating manifests.

* ManifestError                  (one document or file could not be accepted; carries every problem)
  .errors: tuple[FieldError, ...]  (each names a field path and what was expected)

A :class:`FieldError` is a value, not an exception: validators collect all of them so a user sees
every problem of a manifest at once, and never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem at one place in a manifest.

    ``path`` is a field path such as ``spec.workerGroupSpecs[1].minReplicas`` (empty for the whole
    document); ``rule`` names the check that failed (``schema``, or the KubeRay rule), so tests and
    tools can tell which rule rejected a manifest.
    """

    path: str
    message: str
    rule: str = "schema"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def shorten(text: str, limit: int = 40) -> str:
    """A user-supplied string as quoted in an error message: repr'd, and cut when long."""
    return repr(text) if len(text) <= limit else repr(text[: limit - 3] + "...")


class ManifestError(Exception):
    """A manifest (or a file of them) is not acceptable; ``errors`` lists every reason."""

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(str(error) for error in self.errors))
