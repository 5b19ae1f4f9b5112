"""The page password: argon2 hashing, verification and generated passwords.

`python -m edge.web.password` asks for a password and prints the hash to put in
`web.password_hash`.
"""

from __future__ import annotations

import getpass
import logging
import secrets
import sys

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

log = logging.getLogger(__name__)
# Unambiguous lower-case letters and digits: easy to type on a phone.
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def hasher() -> PasswordHasher:
    """Argon2id with OWASP's minimum (19 MiB, 2 passes): bearable on a Pi Zero 2 W."""
    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    """The argon2 hash of `password`."""
    return hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches the hash; a malformed hash never matches."""
    try:
        return hasher().verify(password_hash, password)
    except InvalidHashError:
        log.error("the stored page password hash is not a valid argon2 hash")
        return False
    except VerificationError:
        return False


def generate_password(groups: int = 4, group_len: int = 4) -> str:
    """A random password like 'k7mp-q2xd-9fha-w3tz' (about 79 bits)."""
    return "-".join(
        "".join(secrets.choice(_ALPHABET) for _ in range(group_len)) for _ in range(groups)
    )


def main() -> int:
    """Ask for a password twice and print its hash for `web.password_hash`."""
    first = getpass.getpass("status page password: ")
    if len(first) < 8:
        print("error: use at least 8 characters", file=sys.stderr)
        return 2
    if getpass.getpass("again: ") != first:
        print("error: the passwords differ", file=sys.stderr)
        return 2
    print(hash_password(first))
    return 0


if __name__ == "__main__":
    sys.exit(main())
