"""Builders of the child objects KubeRay creates, as pure functions (KubeRay's ``controllers/ray/common``).

* :mod:`.names` and :mod:`.labels` — object names, label and annotation keys;
* :mod:`.pod` — head and worker pods (with :mod:`.pod_parts` and :mod:`.pod_env` for their pieces);
* :mod:`.service` — head, headless-worker and serve Services;
* :mod:`.submitter` — RayJob submission: the submitter Job, the sidecar container, the HTTP request body.
"""
