"""Filter `mosquitto_password`: a password-file line Mosquitto 2 accepts, computed here.

Mosquitto's own tool (`mosquitto_passwd`) picks a random salt, so a file it writes
changes on every run. This filter derives the salt from the user name and password
instead (HMAC), so the same credentials give the same line and the template is
idempotent; changing a password changes its salt as well. The format is Mosquitto's
`$7$` (PBKDF2-HMAC-SHA512): `user:$7$<iterations>$<base64 salt>$<base64 hash>`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from ansible.errors import AnsibleFilterError

SALT_BYTES = 12


def mosquitto_password(password: str, user: str, iterations: int = 101) -> str:
    """Return `user:$7$...` for a Mosquitto password file."""
    if not user or ":" in user:
        raise AnsibleFilterError(f"mosquitto_password: invalid user name {user!r}")
    if not password:
        raise AnsibleFilterError(f"mosquitto_password: empty password for {user!r}")
    secret = str(password).encode()
    salt = hmac.new(secret, b"mosquitto-salt:" + user.encode(), hashlib.sha256).digest()
    salt = salt[:SALT_BYTES]
    digest = hashlib.pbkdf2_hmac("sha512", secret, salt, int(iterations))
    encode = base64.b64encode
    return f"{user}:$7${int(iterations)}${encode(salt).decode()}${encode(digest).decode()}"


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, object]:
        return {"mosquitto_password": mosquitto_password}
