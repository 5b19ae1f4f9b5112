"""Server-side page sessions in the device's SQLite: revocable at logout and on a new password.

The cookie carries only a random token; the database keeps its SHA-256, so a copied
database opens no session. A session is valid while its row exists, has not expired and
was granted under the current password hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from edge.tables import WebSessionRow

# last_seen_at is refreshed at most this often: a page view should not always write.
TOUCH_EVERY = timedelta(minutes=5)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ActiveSession:
    """One signed-in browser, for the sessions page."""

    ref: str  # a short public handle (not the token) to revoke it by
    created_at: datetime
    last_seen_at: datetime
    client: str
    user_agent: str


class WebSessions:
    """Creates, checks, lists and revokes page sessions."""

    def __init__(self, engine: Engine, grant: str, lifetime: timedelta) -> None:
        self._engine = engine
        self._grant = grant
        self._lifetime = lifetime
        # A new password hash revokes every session granted under an older one.
        with Session(engine) as s, s.begin():
            s.execute(delete(WebSessionRow).where(WebSessionRow.grant != grant))

    def create(self, client: str, user_agent: str) -> str:
        """A new session's token (for the cookie)."""
        token = secrets.token_urlsafe(32)
        now = datetime.now(timezone.utc)
        with Session(self._engine) as s, s.begin():
            s.execute(delete(WebSessionRow).where(WebSessionRow.expires_at < now))
            s.add(
                WebSessionRow(
                    token_hash=_digest(token),
                    grant=self._grant,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + self._lifetime,
                    client=client[:64],
                    user_agent=user_agent[:200],
                )
            )
        return token

    def valid(self, token: str) -> bool:
        """True when `token` names a live session under the current password."""
        now = datetime.now(timezone.utc)
        with Session(self._engine) as s, s.begin():
            row = s.get(WebSessionRow, _digest(token))
            if row is None or not hmac.compare_digest(row.grant, self._grant):
                return False
            if _utc(row.expires_at) <= now:
                s.delete(row)
                return False
            if now - _utc(row.last_seen_at) >= TOUCH_EVERY:
                row.last_seen_at = now
            return True

    def revoke(self, token: str) -> None:
        """End the session `token` names (logout)."""
        with Session(self._engine) as s, s.begin():
            s.execute(delete(WebSessionRow).where(WebSessionRow.token_hash == _digest(token)))

    def revoke_ref(self, ref: str) -> bool:
        """End the session shown on the page as `ref`; False when there is none."""
        if len(ref) != 12 or any(c not in "0123456789abcdef" for c in ref):
            return False
        with Session(self._engine) as s, s.begin():
            result = s.execute(
                delete(WebSessionRow).where(WebSessionRow.token_hash.startswith(ref))
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def active(self) -> list[ActiveSession]:
        """Live sessions, most recently used first."""
        now = datetime.now(timezone.utc)
        q = (
            select(WebSessionRow)
            .where(WebSessionRow.expires_at > now, WebSessionRow.grant == self._grant)
            .order_by(WebSessionRow.last_seen_at.desc())
        )
        with Session(self._engine) as s:
            rows = list(s.execute(q).scalars())
        return [
            ActiveSession(
                r.token_hash[:12], _utc(r.created_at), _utc(r.last_seen_at), r.client, r.user_agent
            )
            for r in rows
        ]

    @staticmethod
    def ref_of(token: str) -> str:
        """The public handle of the session `token` names."""
        return _digest(token)[:12]


def _utc(value: datetime) -> datetime:
    # SQLite returns naive datetimes; they were written as UTC.
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
