"""KubeRay's controllers, re-implemented: planners that decide, builders that shape child objects.

Everything under :mod:`kray.controllers.common` is pure: it turns a ``ray.io/v1`` object (and the
operator's settings, passed in) into the exact Kubernetes JSON KubeRay would send — pods, services,
submitter Jobs. Reconcilers elsewhere do the I/O; keeping the shaping pure is what lets golden tests
pin it against KubeRay's behaviour.
"""
