"""The local control-plane server: one process hosting the embedded store, the controllers and the
pod runner, reachable by the CLI over a token-protected API on 127.0.0.1."""
