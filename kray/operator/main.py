"""Entry point of one operator process: build the :class:`~kray.operator.manager.Operator`, elect, run.

Kept apart from the manager so tests can host an Operator in-process with their own store and
leader callable, while ``kray operator`` gets exactly this wiring.
"""

from __future__ import annotations

import asyncio

import structlog

from kray.operator.config import OperatorConfig
from kray.operator.manager import Operator
from kray.store.errors import StoreError

log = structlog.get_logger(__name__)

EXIT_CONFIG = 2


async def run_operator(config: OperatorConfig, *, stop: asyncio.Event) -> int:
    try:
        operator = Operator(config)
    except (StoreError, OSError, ValueError) as error:
        log.error("operator.cannot_connect", error=str(error))
        return EXIT_CONFIG
    return await operator.run(stop)
