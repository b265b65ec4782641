"""The RayCluster controller: pods and services for a Ray cluster, and its status (reference §2)."""
