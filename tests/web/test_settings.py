"""The web config section: safe defaults and clear refusals."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edge.web.settings import WebConfig


def test_every_field_is_described() -> None:
    assert all(f.description for f in WebConfig.model_fields.values())


def test_defaults_are_locked_down() -> None:
    cfg = WebConfig()
    assert cfg.password_hash is None  # a password is generated at first start
    assert cfg.metrics_token_file is None  # /metrics then needs a login
    assert not cfg.behind_tls_proxy


def test_a_plain_password_is_refused_in_place_of_a_hash() -> None:
    with pytest.raises(ValidationError, match="argon2 hash"):
        WebConfig(password_hash="hunter22")


def test_behind_a_tls_proxy_the_page_must_listen_on_loopback() -> None:
    with pytest.raises(ValidationError, match=r"127\.0\.0\.1"):
        WebConfig(behind_tls_proxy=True)
    assert WebConfig(behind_tls_proxy=True, host="127.0.0.1").behind_tls_proxy
    assert WebConfig(behind_tls_proxy=True, host="::1").behind_tls_proxy


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError):
        WebConfig(tls_cert="/etc/cert.pem")  # type: ignore[call-arg]
