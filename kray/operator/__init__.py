"""kray's operator: the shared controllers run against a Kubernetes API server, as KubeRay's operator does.

Local mode (:mod:`kray.local`) hosts the controllers next to an embedded store and a pod runner; this
package hosts the very same controllers next to a real API server: informers scoped as KubeRay's
cache, leader election on a Lease, health and metrics endpoints, JSON logs. It never imports ``ray``:
the operator image carries no Ray, it talks to clusters through their dashboards' REST API.
"""
