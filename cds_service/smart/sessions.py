"""The evidence-timeline app's sessions, in the shared database (``CDS_DATABASE_URL``), so a
launch that starts on one worker or instance finishes on any other.

The browser holds only an opaque random id (cookie); the row is keyed by its SHA-256, so even
the database does not hold a usable cookie. A session is ``pending`` from the launch until the
callback (10 minutes), ``exchanging`` while its code is traded (claimed atomically, so a code is
exchanged once), then ``ready`` with the access token until the token expires. The row, token
included, is deleted by the database's purge after it expires.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Column, Index, String, Table, Text, select, update

from ..db import Database, UtcDateTime, metadata

PENDING_TTL = timedelta(minutes=10)
MAX_TOKEN_TTL = timedelta(hours=8)  # a token that claims longer is kept this long at most
DEFAULT_TOKEN_TTL = timedelta(minutes=60)  # token response without expires_in

smart_sessions = Table(
    "smart_sessions", metadata,
    Column("id", String(64), primary_key=True),  # sha256 hex of the cookie value
    Column("status", String(16), nullable=False),  # pending | exchanging | ready
    Column("state", String(128), nullable=False),
    Column("code_verifier", String(128), nullable=False),
    Column("iss", Text, nullable=False),
    Column("token_endpoint", Text, nullable=False),
    Column("access_token", Text, nullable=True),
    Column("patient", String(256), nullable=True),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_smart_sessions_expires_at", "expires_at"),
)


def _key(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


@dataclass(frozen=True)
class Pending:
    iss: str
    token_endpoint: str
    state: str
    code_verifier: str = field(repr=False)


@dataclass(frozen=True)
class Ready:
    iss: str
    patient: str
    access_token: str = field(repr=False)


class SessionProblem(Exception):
    """Why a session cannot be used: ``expired`` (or unknown), ``state``, ``used``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SessionStore:
    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._now = clock
        db.add_purge("smart-sessions", smart_sessions.c.expires_at, cutoff=clock)

    def start(self, iss: str, token_endpoint: str, state: str, code_verifier: str) -> str:
        """A pending session; returns the cookie value (opaque, 256 random bits)."""
        cookie = secrets.token_urlsafe(32)
        with self._db.begin() as conn:
            conn.execute(smart_sessions.insert().values(
                id=_key(cookie), status="pending", state=state, code_verifier=code_verifier,
                iss=iss, token_endpoint=token_endpoint, expires_at=self._now() + PENDING_TTL))
        self._db.maybe_purge()
        return cookie

    def claim(self, cookie: str | None, state: str | None) -> Pending:
        """Take the pending session for its code exchange (once: a second callback fails).

        :raises SessionProblem: unknown or expired, wrong ``state`` (the session is spent), or
            already used.
        """
        if not cookie:
            raise SessionProblem("expired")
        key = _key(cookie)
        now = self._now()
        with self._db.begin() as conn:
            row = conn.execute(select(smart_sessions).where(
                smart_sessions.c.id == key, smart_sessions.c.expires_at > now)).first()
            if row is None:
                raise SessionProblem("expired")
            if row.status != "pending":
                raise SessionProblem("used")
            claimed = conn.execute(update(smart_sessions).where(
                smart_sessions.c.id == key, smart_sessions.c.status == "pending").values(
                status="exchanging")).rowcount
            if claimed != 1:
                raise SessionProblem("used")
        if not state or not hmac.compare_digest(state.encode(), row.state.encode()):
            raise SessionProblem("state")
        return Pending(row.iss, row.token_endpoint, row.state, row.code_verifier)

    def complete(self, cookie: str, access_token: str, patient: str,
                 expires_in: float | None) -> str:
        """Keep the token until it expires; returns a new cookie value (the id is rotated)."""
        ttl = DEFAULT_TOKEN_TTL if expires_in is None else timedelta(seconds=max(expires_in, 0))
        fresh = secrets.token_urlsafe(32)
        with self._db.begin() as conn:
            conn.execute(update(smart_sessions).where(
                smart_sessions.c.id == _key(cookie),
                smart_sessions.c.status == "exchanging").values(
                id=_key(fresh), status="ready", access_token=access_token, patient=patient,
                expires_at=self._now() + min(ttl, MAX_TOKEN_TTL)))
        return fresh

    def ready(self, cookie: str | None) -> Ready:
        """The authorised session. :raises SessionProblem: none, or expired with its token."""
        if not cookie:
            raise SessionProblem("expired")
        with self._db.read() as conn:
            row = conn.execute(select(smart_sessions).where(
                smart_sessions.c.id == _key(cookie), smart_sessions.c.status == "ready",
                smart_sessions.c.expires_at > self._now())).first()
        if row is None or not row.access_token or not row.patient:
            raise SessionProblem("expired")
        return Ready(row.iss, row.patient, row.access_token)

    def end(self, cookie: str | None) -> None:
        """Forget a session (a failed exchange, or the user is done)."""
        if cookie:
            with self._db.begin() as conn:
                conn.execute(smart_sessions.delete().where(smart_sessions.c.id == _key(cookie)))
