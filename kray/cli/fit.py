"""Refuse, before anything is created, a manifest this machine cannot run (issue 8: filled in by the fit checks).

``kray apply`` and ``kray job run`` call :func:`refuse_unfit` with every document they are about to store.
"""

from __future__ import annotations

from typing import Any


def refuse_unfit(documents: list[dict[str, Any]], *, source: str) -> None:
    """Exit (nothing created) when a document needs what this machine lacks; return otherwise."""
    del documents, source
