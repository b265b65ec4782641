"""The embedded store: Kubernetes API semantics over one SQLite file, for local mode.

:func:`open_embedded_store` returns an :class:`EmbeddedStore` implementing :class:`kray.store.Store`
— the same contract suite (``tests/store``) runs against it and a real API server. The local runtime
passes a path in platformdirs' user state directory; tests pass a temporary one.
"""

from kray.local.store.store import EmbeddedSettings, EmbeddedStore, open_embedded_store

__all__ = ["EmbeddedSettings", "EmbeddedStore", "open_embedded_store"]
