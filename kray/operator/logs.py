"""Structured logs for the operator: one JSON object per line on stdout (KubeRay's default encoder).

``console`` renders the same events for a terminal. Secrets never reach a log line: the controllers
log names, reasons and errors, never tokens or Secret data.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

Encoder = Literal["json", "console"]
ENCODERS: tuple[Encoder, ...] = ("json", "console")


def configure(*, encoder: Encoder = "json", level: int = logging.INFO) -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if encoder == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
