"""Config section of the grower's status page.

The page is locked by default: without `password_hash` the first start generates a
password, keeps only its hash in the data folder and logs the password once. The
agent serves plain HTTP (waitress has no TLS); for HTTPS a reverse proxy on the
device terminates TLS and forwards to the agent on the loopback address, and
`behind_tls_proxy` turns on Secure cookies and HSTS.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class WebConfig(BaseModel):
    """The grower's status page on the device."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Serve the status page.")
    host: str = Field("0.0.0.0", description="Address to listen on.")
    port: int = Field(8080, ge=1, le=65535, description="Port to listen on.")
    password_hash: str | None = Field(
        None,
        description="Argon2 hash of the page password (`python -m edge.web.password` makes "
        "one); null: generate a password at first start, keep its hash in the data folder "
        "and log the password once.",
    )
    session_hours: int = Field(
        168, ge=1, le=8760, description="Hours a login lasts before the grower signs in again."
    )
    login_attempts: int = Field(
        5, ge=1, le=1000, description="Failed logins allowed per client address per window."
    )
    login_window_s: int = Field(
        300, ge=10, le=86400, description="Window, in seconds, failed logins are counted over."
    )
    behind_tls_proxy: bool = Field(
        False,
        description="A reverse proxy on this device terminates HTTPS: mark cookies Secure, "
        "send HSTS and trust its X-Forwarded-For/-Proto (needs host 127.0.0.1 or ::1).",
    )
    metrics_token_file: Path | None = Field(
        None,
        description="File holding a bearer token that opens /metrics and /readyz to "
        "scrapers; null: they need a login like the pages.",
    )
    threads: int = Field(4, ge=1, le=32, description="Worker threads serving requests.")

    @field_validator("password_hash")
    @classmethod
    def _argon2_hash(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("$argon2"):
            raise ValueError(
                "must be an argon2 hash starting with '$argon2' (make one with "
                "`python -m edge.web.password`), never the password itself"
            )
        return value

    @model_validator(mode="after")
    def _proxy_on_loopback(self) -> WebConfig:
        if self.behind_tls_proxy and not _is_loopback(self.host):
            raise ValueError(
                "behind_tls_proxy needs host 127.0.0.1 or ::1, so that the page cannot be "
                "reached around the proxy without TLS"
            )
        return self


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
