"""The one place kray's version lives (read by the build backend and by ``kray version``)."""

__version__ = "0.1.0"
