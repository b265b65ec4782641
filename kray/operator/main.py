"""Entry point of one operator process: build the :class:`~kray.operator.manager.Operator`, elect, run.

Kept apart from the manager so tests can host an Operator in-process with their own store and
leader callable, while ``kray operator`` gets exactly this wiring.
"""

from __future__ import annotations

import asyncio
import sys

import structlog

from kray.operator.config import OperatorConfig
from kray.operator.manager import Operator
from kray.store.errors import StoreError

log = structlog.get_logger(__name__)

EXIT_CONFIG = 2
JSON_NESTING_HEADROOM = 12_000
"""Under a CRD with validation off the apiserver stores JSON nested up to 10,000 levels (Go's decoder
limit), and Python's json spends one recursion level per nesting level: with the default limit (1,000)
one such custom resource made every list and watch of its kind fail, and no object of that kind in its
namespace was reconciled any more."""


async def run_operator(config: OperatorConfig, *, stop: asyncio.Event) -> int:
    sys.setrecursionlimit(max(sys.getrecursionlimit(), JSON_NESTING_HEADROOM))
    try:
        operator = Operator(config)
    except (StoreError, OSError, ValueError) as error:
        log.error("operator.cannot_connect", error=str(error))
        return EXIT_CONFIG
    return await operator.run(stop)
