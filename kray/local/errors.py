"""Errors of the local process kit (:mod:`kray.local`).

* LocalError
  + SpawnError          (the program could not be started: missing, not executable, bad cwd; OSError chained)
  + PortsExhausted      (no free port left in the allocator's range)
  + ProbeSpecError      (a probe spec kray cannot run: no handler, two handlers, grpc, an unknown named port)

A process that starts and then fails is not an error here: it is an exit code for the caller to judge.
"""

from __future__ import annotations


class LocalError(Exception):
    """Something in the local process kit failed."""


class SpawnError(LocalError):
    """A process could not be started."""


class PortsExhausted(LocalError):
    """The port allocator found no free port."""


class ProbeSpecError(LocalError, ValueError):
    """A Kubernetes probe spec that cannot be run locally."""
