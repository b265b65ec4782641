"""The example Serve app of ``examples/rayservice.yaml``: one deployment that says which version it is.

Why two knobs: an upgrade of the Serve config alone (``user_config.version``, v1 -> v2) is applied in place
on the running cluster, while an upgrade of the cluster spec (the containers' ``APP_BUILD`` env var) makes
KubeRay start a new cluster. The answer names both, so a client can tell which upgrade it went through:
``{"version": "v1", "build": "a"}``. ``examples/rayservice.yaml`` ships this same code in a ConfigMap.
"""

import os

from ray import serve


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Version:
    def __init__(self) -> None:
        self.version = "v1"

    def reconfigure(self, config: dict[str, str]) -> None:
        self.version = str(config.get("version", "v1"))

    async def __call__(self, request: object) -> dict[str, str]:
        return {"version": self.version, "build": os.environ.get("APP_BUILD", "")}


app = Version.bind()
