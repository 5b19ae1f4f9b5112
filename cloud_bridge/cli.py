"""The `cultivai-bridge` command."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point; the bridge service is not part of this release yet."""
    del argv
    print(
        "cultivai-bridge: the cloud bridge is not part of this release yet; "
        "devices keep every observation in their outbox until it is.",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
