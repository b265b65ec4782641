"""examples/rayservice.yaml as the upgrade tests change it, locally (tests/local_mode/test_lm_serve_upgrades.py) and on
the node agent (tests/e2e/test_rayservice.py): ``user_config.version`` is a Serve-config-only change, the containers'
``APP_BUILD`` a cluster spec change (a new cluster); the app answers both, so a test sees which one served it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "rayservice.yaml"


def set_build(spec: dict[str, Any], build: str) -> None:
    cluster = spec["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]
    for template in templates:
        for container in template["spec"]["containers"]:
            for env in container.get("env") or ():
                if env["name"] == "APP_BUILD":
                    env["value"] = build


def set_version(spec: dict[str, Any], version: str) -> None:
    config = yaml.safe_load(spec["serveConfigV2"])
    config["applications"][0]["deployments"][0]["user_config"]["version"] = version
    spec["serveConfigV2"] = yaml.safe_dump(config, sort_keys=False)
