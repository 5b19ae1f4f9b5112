"""Render the agent's systemd units and log rotation from the Ansible role's templates.

One source for both ways a device is set up: the image and `ansible/site.yml` install
the same unit. Usage: ``python3 render_units.py ROOTFS``; needs Jinja2 and PyYAML.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jinja2
import yaml

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE.parents[1] / "ansible/roles/edge_device/templates"
LOGROTATE = ("logrotate.j2", "etc/logrotate.d/cultivai-edge")


def units() -> dict[str, str]:
    """Template -> file in the root: every unit template of the role, and log rotation."""
    found = {
        t.name: f"etc/systemd/system/{t.name.removesuffix('.j2')}"
        for t in sorted(TEMPLATES.glob("cultivai-edge*.j2"))
        if t.name.removesuffix(".j2").rsplit(".", 1)[-1] in ("service", "timer")
    }
    return {**found, LOGROTATE[0]: LOGROTATE[1]}


def variables() -> dict[str, object]:
    """The role's defaults with the image's values (unit-vars.yml) over them."""
    defaults = yaml.safe_load((TEMPLATES.parent / "defaults/main.yml").read_text())
    image = yaml.safe_load((HERE / "unit-vars.yml").read_text())
    values = {k: v for k, v in defaults.items() if not isinstance(v, str) or "{{" not in v}
    values.update(image)
    return values


def render(rootfs: Path) -> list[Path]:
    """Write every unit into `rootfs`; returns the files written."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    values = variables()
    written = []
    for template, dest in units().items():
        text = env.get_template(template).render(**values)
        text = text.replace(
            "# Managed by Ansible (role edge_device).",
            "# Part of the appliance image (rendered from the Ansible role edge_device).",
        )
        out = rootfs / dest
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        written.append(out)
    return written


if __name__ == "__main__":
    for path in render(Path(sys.argv[1])):
        print(f"rendered {path}")
