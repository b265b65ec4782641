"""The benches print their results as ``|``-separated tables; the smoke tests read them back by first cell."""

from __future__ import annotations


def table_rows(stdout: str, *, width: int) -> dict[str, list[str]]:
    """Every line of ``width`` cells, keyed by its first cell (the header row under its first column's title)."""
    rows: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) == width:
            rows[cells[0]] = cells[1:]
    return rows
