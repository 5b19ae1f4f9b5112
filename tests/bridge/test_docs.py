"""docs/bridge.md stays in step with the code."""

from __future__ import annotations

from pathlib import Path

from cloud_bridge.config_reference import BEGIN, END, render

DOC = Path(__file__).resolve().parents[2] / "docs" / "bridge.md"


def test_configuration_reference_is_current() -> None:
    text = DOC.read_text(encoding="utf-8")
    documented = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert documented == render(), (
        "run `python -m cloud_bridge.config_reference` into docs/bridge.md"
    )
