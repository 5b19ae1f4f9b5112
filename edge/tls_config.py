"""The TLS settings of a broker connection, shared by the agent and the bridge.

Kept apart from `edge.config` so the bridge can use it without importing the
device's camera and vision code.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TlsConfig(BaseModel):
    """TLS for the broker connection."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: Path = Field(description="CA certificate that signed the broker's certificate.")
    cert_file: Path | None = Field(None, description="Client certificate, for mutual TLS.")
    key_file: Path | None = Field(None, description="Private key of the client certificate.")

    @model_validator(mode="after")
    def _cert_and_key(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be set together")
        return self
