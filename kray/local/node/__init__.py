"""The node agent: a Kubernetes node on this machine that runs the pods bound to it as processes.

It is the local pod runner (:mod:`kray.local.podrunner`) pointed at a real apiserver instead of the embedded
store, with a :class:`kray.local.sandbox.Sandboxes` that gives each pod its own network namespace, IP and
view of the cluster's Services, as a kubelet with a CNI plugin and kube-proxy would.
"""
