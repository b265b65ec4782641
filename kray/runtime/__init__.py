"""kray's small controller runtime: informers over a Store, a de-duplicating work queue, workers.

The same runtime drives the controllers against the embedded store (local mode) and against a
Kubernetes API server (operator); it knows nothing of Ray. The operator adds two pieces local mode
does not need: Lease leader election (:mod:`.leader`) and controller-runtime's Prometheus metrics
(:mod:`.metrics`), both opt-in.
"""
