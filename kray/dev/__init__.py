"""Development and test support: a real Kubernetes control plane on loopback, without Docker.

kray's Kubernetes side must be proven against a real kube-apiserver, not a fake. The project's machines
cannot download release binaries or run containers, so ``hack/k8s/build.sh`` compiles etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and kwok from the Go module proxy (cached by
version), and this package runs them:

- :mod:`kray.dev.binaries` finds the cached binaries and builds them on first use;
- :mod:`kray.dev.controlplane` starts etcd + kube-apiserver (+ controller-manager, scheduler, kwok) on free
  127.0.0.1 ports with generated certificates and a static token, writes a kubeconfig, and stops every
  process it started;
- :mod:`kray.dev.pytest_plugin` exposes it as pytest fixtures (``k8s_control_plane``, ``ray_crds``,
  ``k8s_namespace``, ``kwok_nodes``);
- ``kray dev k8s up|down|env`` (:mod:`kray.cli.dev`) runs it detached for any kubeconfig-driven program.
"""
