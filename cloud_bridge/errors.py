"""The one root exception of the cloud bridge and its failure kinds."""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every error the bridge raises on purpose."""


class ConfigError(BridgeError, ValueError):
    """The configuration file is missing, unreadable or invalid."""

    def __init__(self, problems: list[str], source: str = "config") -> None:
        self.problems = problems
        self.source = source
        super().__init__(f"{source}: " + "; ".join(problems))


class SecretFileError(BridgeError, OSError):
    """A password or token file named in the config cannot be read or is empty."""


class SchemaNotReadyError(BridgeError, RuntimeError):
    """The database schema is missing or older than this bridge: run `cultivai-bridge migrate`."""


class DatabaseUnavailableError(BridgeError, ConnectionError):
    """The database cannot be reached right now; the caller should back off and retry."""
