"""The bridge's configuration: one YAML file, one pydantic model per section.

Loading a config reads the file and the environment and nothing else: no network,
no files written, secrets (password and token files) are read later, at start.
Environment variables override single fields, named
``CULTIVAI_BRIDGE__<SECTION>__<FIELD>`` (for example ``CULTIVAI_BRIDGE__DATABASE__URL``);
their values are read as YAML scalars.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from cloud_bridge.errors import ConfigError, SecretFileError
from edge import yaml_config
from edge.path_checks import PathProblem, secret_file, tls_files
from edge.tls_config import TlsConfig

ENV_PREFIX = "CULTIVAI_BRIDGE__"
DEFAULT_CONFIG_PATH = Path("/etc/cultivai/bridge.yaml")
DEFAULT_DATABASE_URL = "sqlite:////var/lib/cultivai-bridge/bridge.sqlite3"
_TOPIC_LEVEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ORIGIN = re.compile(
    r"https?://([A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?"
)


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttConfig(Section):
    """The broker the fleet publishes to, and how this bridge holds its session there."""

    host: str = Field("localhost", min_length=1, description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is usual with TLS).")
    tls: TlsConfig | None = Field(None, description="TLS settings; null: plain TCP.")
    username: str | None = Field(None, description="Broker user name of this bridge.")
    password_file: Path | None = Field(
        None, description="File holding the broker password (never the password itself)."
    )
    client_id: str = Field(
        "cultivai-bridge-1",
        description="Fixed MQTT client id; the broker keeps this bridge's session under it, "
        "so it must be unique per bridge process and stay the same across restarts.",
    )
    group: str = Field(
        "cultivai-bridge",
        description="Deprecated and ignored: bridges subscribe without a shared group, since a "
        "broker ACL file cannot keep devices out of one (see docs/bridge.md).",
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive in seconds.")
    session_expiry_s: int = Field(
        7 * 86400,
        ge=0,
        le=4_294_967_294,
        description="How long the broker keeps this bridge's session (and queues its "
        "messages) while the bridge is away; 0 only to retire a bridge from its group.",
    )
    receive_maximum: int = Field(
        2000,
        ge=1,
        le=65535,
        description="Unacknowledged messages the broker may have in flight to this bridge.",
    )
    reconnect_max_s: float = Field(
        30.0, gt=0, le=600, description="Longest wait between reconnection attempts."
    )

    @field_validator("client_id", "group")
    @classmethod
    def _topic_safe(cls, value: str) -> str:
        if not _TOPIC_LEVEL.fullmatch(value):
            raise ValueError(
                "must be 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"
            )
        return value

    @model_validator(mode="after")
    def _password_needs_user(self) -> MqttConfig:
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file is set but username is not")
        return self


class DatabaseConfig(Section):
    """Where the fleet's history is kept."""

    url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL: postgresql+psycopg://user@host/db (production) or "
        "sqlite:////path/file.sqlite3 (embedded); no password in it, use password_file.",
    )
    password_file: Path | None = Field(
        None, description="File holding the database password (never the password itself)."
    )
    pool_size: int = Field(5, ge=1, le=100, description="Database connections kept open.")
    connect_timeout_s: int = Field(
        5, ge=1, le=120, description="Seconds to wait for a database connection."
    )
    retry_max_s: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Longest back-off between attempts while the database is down.",
    )
    read_url: str | None = Field(
        None,
        description="SQLAlchemy URL of a streaming read replica for the read API "
        "(postgresql+psycopg://...; password from password_file); null: the API reads "
        "the primary. Ingest and the gap filler always use url.",
    )
    read_max_lag_s: float = Field(
        30.0,
        gt=0,
        le=86_400,
        description="/readyz reports not ready when the read replica replays more than "
        "this many seconds behind the primary.",
    )
    retention_days: int = Field(
        0,
        ge=0,
        le=36_500,
        description="Observations captured longer ago than this are removed (whole weekly "
        "partitions on PostgreSQL, hourly); 0 keeps everything.",
    )
    partitions_ahead_weeks: int = Field(
        4,
        ge=1,
        le=52,
        description="Weekly partitions of observations created ahead of the current week "
        "(PostgreSQL).",
    )

    @field_validator("url", "read_url")
    @classmethod
    def _supported_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(
                "is not a database URL such as postgresql+psycopg://bridge@db/cultivai"
            ) from None
        if url.get_backend_name() not in ("postgresql", "sqlite"):
            raise ValueError("must be a postgresql or sqlite URL")
        if url.get_backend_name() == "postgresql" and url.drivername not in (
            "postgresql",
            "postgresql+psycopg",
        ):
            raise ValueError("PostgreSQL URLs must use the psycopg driver: postgresql+psycopg://")
        if url.password:
            raise ValueError("must not contain a password; put it in database.password_file")
        return value

    @model_validator(mode="after")
    def _replica_of_postgresql(self) -> DatabaseConfig:
        if self.read_url is None:
            return self
        if make_url(self.url).get_backend_name() != "postgresql":
            raise ValueError("read_url needs a postgresql url: SQLite has no read replicas")
        if make_url(self.read_url).get_backend_name() != "postgresql":
            raise ValueError("read_url must be a postgresql+psycopg:// URL")
        return self


class HttpConfig(Section):
    """The read API, health checks and metrics."""

    enabled: bool = Field(True, description="Serve /healthz, /readyz, /metrics and the read API.")
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8090, ge=1, le=65535, description="Port to listen on.")
    token_file: Path | None = Field(
        None,
        description="File holding the bearer token for /api and /metrics; null: those "
        "endpoints are refused.",
    )
    rate_limit_per_minute: int = Field(
        120, ge=1, le=100_000, description="Requests per minute per client address."
    )
    threads: int = Field(4, ge=1, le=64, description="Worker threads serving requests.")
    shared_rate_limit: bool = Field(
        True,
        description="Keep each client's request budget in the PostgreSQL database, so all "
        "bridge replicas share one budget; false, or SQLite: a budget per process.",
    )
    cors_origins: tuple[str, ...] = Field(
        (),
        description="Web origins (https://dash.example.com) whose pages may call the API "
        "from a browser; empty: none (requests carrying any other Origin are refused).",
    )
    max_request_bytes: int = Field(
        16_384,
        ge=0,
        le=1_048_576,
        description="Largest request body accepted (every route is GET; larger: 413).",
    )
    max_url_bytes: int = Field(
        8192, ge=256, le=65_536, description="Longest path and query string accepted (414)."
    )

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: scheme and host, optional port, no path "
                    "and no wildcard (https://grafana.example.com:3000)"
                )
        return tuple(o.lower() for o in value)


class BatchingConfig(Section):
    """How received messages are grouped into one database transaction."""

    max_messages: int = Field(500, ge=1, le=20_000, description="Messages per batch at most.")
    max_seconds: float = Field(
        0.5, gt=0, le=60, description="Seconds a message may wait for its batch to fill."
    )
    max_payload_bytes: int = Field(
        262_144,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Larger payloads are dead-lettered (their first bytes kept).",
    )


class GapsConfig(Section):
    """Finding holes in a device's seq and asking the device to resend them."""

    enabled: bool = Field(True, description="Look for holes and send resend commands.")
    grace_s: float = Field(
        60.0,
        gt=0,
        le=86400,
        description="A seq is a hole once a later seq of the same device has been stored "
        "for this long without it.",
    )
    scan_interval_s: float = Field(
        15.0, gt=0, le=3600, description="Seconds between scans for holes."
    )
    resend_interval_s: float = Field(
        300.0,
        gt=0,
        le=86400,
        description="Least time between two resend requests to one device (across bridges).",
    )
    give_up_after_s: float = Field(
        86400.0,
        gt=0,
        description="Holes whose later seq arrived longer ago than this are no longer asked for.",
    )
    max_requests_per_minute: int = Field(
        60, ge=1, le=100_000, description="Resend commands this bridge sends per minute at most."
    )

    @model_validator(mode="after")
    def _window(self) -> GapsConfig:
        if self.give_up_after_s <= self.grace_s:
            raise ValueError("give_up_after_s must be longer than grace_s")
        return self


class ThumbnailsConfig(Section):
    """Opt-in storage of the small JPEG devices may publish with an observation."""

    enabled: bool = Field(False, description="Subscribe to thumbnails and store them.")
    max_bytes: int = Field(
        65_536, ge=1024, le=4 * 1024 * 1024, description="Larger thumbnails are dead-lettered."
    )


class LoggingConfig(Section):
    """Log output."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    format: Literal["json", "text"] = Field(
        "json", description="One JSON object per line, or text."
    )


class BridgeConfig(Section):
    """The whole bridge configuration."""

    mqtt: MqttConfig = Field(
        default_factory=MqttConfig, description="Broker connection and this bridge's session."
    )
    database: DatabaseConfig = Field(
        default_factory=DatabaseConfig, description="The fleet database."
    )
    http: HttpConfig = Field(
        default_factory=HttpConfig, description="Read API, health checks and metrics."
    )
    batching: BatchingConfig = Field(default_factory=BatchingConfig, description="Batching limits.")
    gaps: GapsConfig = Field(
        default_factory=GapsConfig, description="Finding and backfilling holes in device seqs."
    )
    thumbnails: ThumbnailsConfig = Field(
        default_factory=ThumbnailsConfig, description="Thumbnail storage (opt-in)."
    )
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging.")

    @model_validator(mode="after")
    def _inflight_covers_a_batch(self) -> BridgeConfig:
        if self.mqtt.receive_maximum < self.batching.max_messages:
            raise ValueError(
                f"mqtt.receive_maximum ({self.mqtt.receive_maximum}) must be at least "
                f"batching.max_messages ({self.batching.max_messages}): the broker stops "
                "sending once that many messages wait for their acknowledgement"
            )
        return self


def describe_errors(exc: ValidationError) -> list[str]:
    """One line per problem: field path, what is wrong and the value that was given."""
    return yaml_config.describe_errors(exc, model=BridgeConfig)


def config_from_data(
    data: object, env: Mapping[str, str] | None = None, source: str = "config"
) -> BridgeConfig:
    """Validate already-parsed YAML data (plus environment overrides)."""
    return yaml_config.validate(
        BridgeConfig, data, env=env, prefix=ENV_PREFIX, source=source, error=ConfigError
    )


def load_config(path: Path, env: Mapping[str, str] | None = None) -> BridgeConfig:
    """Read and validate a YAML config file; raises ConfigError listing every problem."""
    return config_from_data(yaml_config.read_yaml(path, ConfigError), env, str(path))


def path_problems(config: BridgeConfig) -> list[str]:
    """Every secret and TLS file the config names that is missing or unusable."""
    found: list[PathProblem] = []
    m = config.mqtt
    if m.password_file is not None:
        found += secret_file("mqtt.password_file", m.password_file)
    if m.tls is not None:
        found += tls_files("mqtt.tls", m.tls)
    if config.database.password_file is not None:
        found += secret_file("database.password_file", config.database.password_file)
    if config.http.enabled and config.http.token_file is not None:
        found += secret_file("http.token_file", config.http.token_file)
    return [str(p) for p in found]


def read_secret(path: Path, what: str) -> str:
    """The first line of a secret file, stripped; raises SecretFileError naming `what`."""
    try:
        value = path.read_text(encoding="utf-8").strip().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretFileError(f"{what} file {path} cannot be read: {exc}") from None
    if not value or not value[0].strip():
        raise SecretFileError(f"{what} file {path} is empty")
    return value[0].strip()
