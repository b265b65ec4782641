"""The RayService controller: Ray Serve applications on RayClusters, upgraded without downtime.

:mod:`.plan` decides (pure: snapshot in, actions out) and :mod:`.status` computes the conditions and
status KubeRay v1.7 writes; the reconcile that does the I/O sits on top of both.
"""
