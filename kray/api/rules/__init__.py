"""KubeRay's controller-side validation (reference §1.6), reported with field paths.

KubeRay checks these inside its reconcilers and reports only the first failure (as an event, or a
ValidationFailed status). kray runs the same rules before anything is created and reports all of
them at once. Each :class:`~kray.api.errors.FieldError` carries ``rule``: the name of the KubeRay
check it reproduces, so the corpus test can say which rule rejected a sample.
"""

from kray.api.rules.gates import FeatureGates
from kray.api.rules.raycluster import check_raycluster
from kray.api.rules.raycronjob import check_raycronjob
from kray.api.rules.rayjob import check_rayjob
from kray.api.rules.rayservice import check_rayservice

__all__ = ["FeatureGates", "check_raycluster", "check_raycronjob", "check_rayjob", "check_rayservice"]
