"""Helpers to run real Envoy processes in tests and to adapt Envoy configs for them."""

from . import config
from .envoy import EnvoyError, EnvoyExited, EnvoyProcess, envoy_binary, free_port, start_expecting_failure, validate

__all__ = [
    "EnvoyError",
    "EnvoyExited",
    "EnvoyProcess",
    "config",
    "envoy_binary",
    "free_port",
    "start_expecting_failure",
    "validate",
]
