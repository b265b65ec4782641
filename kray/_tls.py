"""One TLS trust context for the HTTP clients kray makes again and again.

httpx builds a new ``SSLContext`` for every client and loads the whole CA bundle into it (20-40 ms of CPU), even
when every URL the client will see is plain ``http://`` -- as the dashboards of the clusters kray starts are. A
dashboard client per reconcile made that a fifth of a core in a local server running one RayJob (py-spy). A
configured ``SSLContext`` may be shared by clients and threads, so one is built, on first use, and reused.
"""

from __future__ import annotations

import functools
import ssl

import httpx2


@functools.cache
def trusted_context(*, trust_env: bool) -> ssl.SSLContext:
    """httpx's own default verification context (system CA bundle; ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when
    ``trust_env``), built once per setting."""
    return httpx2.create_ssl_context(trust_env=trust_env)
