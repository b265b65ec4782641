"""What kray knows about Ray itself: the commands KubeRay generates for it and the APIs it serves.

KubeRay's pods only behave like KubeRay's when the generated ``ray start`` line is byte-for-byte the
same (users read it back from ``KUBERAY_GEN_RAY_START_CMD``; the autoscaler parses its flags), so
those rules live here as pure functions, apart from the pod builders that call them:

* :mod:`kray._ray.start` — ``rayStartParams`` → flags, defaults, resource-derived params, container command;
* :mod:`kray._ray.quantity` — Kubernetes resource quantities (``"500m"``, ``"2Gi"``), parsed exactly;
* :mod:`kray._ray.gojson` — JSON and string quoting exactly as Go prints them, for text KubeRay embeds in commands.

These three do no I/O and read no environment; operator settings come in as arguments. The Ray
dashboard client (:mod:`kray._ray.dashboard`) is the package's one network boundary.
"""
