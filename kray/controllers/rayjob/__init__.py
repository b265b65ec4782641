"""The RayJob controller: KubeRay's RayJob state machine (reference §3.1), written once for both stores."""
