"""The README stays true: its configuration reference matches the code."""

from __future__ import annotations

from pathlib import Path

from edge.config_reference import BEGIN, END, render

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_configuration_reference_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    assert text[start:end].strip() == render().strip(), (
        "README configuration reference is stale: regenerate it with "
        "`python -m edge.config_reference`"
    )


def test_readme_starts_with_the_two_commands() -> None:
    head = README.read_text(encoding="utf-8")[:1500]
    assert "make demo" in head and "make test" in head
