"""kray: Ray on Kubernetes, in Python, and on one machine.

The package implements KubeRay's ``ray.io/v1`` system (RayCluster, RayJob, RayService, RayCronJob):
typed API models with KubeRay's validation, generated CRDs, and a CLI.
"""

from kray._version import __version__

__all__ = ["__version__"]
