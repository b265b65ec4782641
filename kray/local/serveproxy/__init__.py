"""kray's local serve address: an HTTP/1.1 reverse proxy on loopback, one port per RayService.

Why: locally there is no ``<rs>-serve-svc``; the local server opens a port per RayService here and points
it at the active cluster's Serve proxy (:meth:`ServeProxy.route`), switching or splitting by weight on an
upgrade without losing a request in flight.
"""

from kray.local.serveproxy.proxy import ServeProxy, Timeouts
from kray.local.serveproxy.routing import Backend, RouteTable
from kray.local.serveproxy.threaded import ProxyThread

__all__ = ["Backend", "ProxyThread", "RouteTable", "ServeProxy", "Timeouts"]
