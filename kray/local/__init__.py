"""Local mode: the machine as a cluster.

kray's controllers and Ray processes on one machine, without a Kubernetes cluster. The controllers are the
same as on Kubernetes; what changes is the :class:`~kray.store.Store` they are given (the embedded SQLite
store of :mod:`kray.local.store`) and who runs the pods.

Pods become groups of local processes, run with a store-agnostic process kit that is tested against real
processes (``ray start`` included):

* :mod:`kray.local.procs` — start a process in its own session with its output in a log file, re-adopt it
  after a restart (pid + start time, so a reused pid is never mistaken for it), stop it with its whole
  tree, bounded in time;
* :mod:`kray.local.ports` — TCP ports that clash neither with Ray's worker ports, the kernel's ephemeral
  range, nor other clusters started by other kray processes;
* :mod:`kray.local.probes` (timing) and :mod:`kray.local.probe_checks` (attempts) — Kubernetes startup,
  readiness and liveness probes (httpGet, tcpSocket, exec) with the kubelet's timing and thresholds;
* :mod:`kray.local.errors` — the kit's errors.
"""
