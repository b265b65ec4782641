"""Shared pytest setup: registers kray's real-Kubernetes fixtures (see kray.dev.pytest_plugin)."""

pytest_plugins = ["kray.dev.pytest_plugin"]
