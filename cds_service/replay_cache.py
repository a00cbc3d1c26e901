"""The JWT ``jti`` replay cache in the shared database: a token is accepted once, everywhere.

:class:`auth.ReplayCache` remembers accepted ``(iss, jti)`` pairs in one process; with several
gunicorn workers, or several instances behind a load balancer, each process had its own and a
captured token could be replayed once per process. :class:`DatabaseReplayCache` keeps them in
the table ``jti_seen`` of ``CDS_DATABASE_URL`` instead (SQLite: shared by the workers of one host;
PostgreSQL: by every instance), with the same ``remember(iss, jti, until) -> bool``.

One statement decides, atomically on both backends (the primary key does it)::

    INSERT INTO jti_seen (key, expires_at) VALUES (:key, :until)
    ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
                      WHERE jti_seen.expires_at < :now
    RETURNING key

A row comes back when the pair is new, or when it was seen but has expired (and has not been
purged yet): the token is accepted. No row: already used. ``key`` is the SHA-256 of the pair, so
the column has a fixed size whatever the client sends, and no token content is stored. Expired
rows are deleted by the database's purge (:meth:`cds_service.db.Database.add_purge`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable

from sqlalchemy import Column, Double, Index, String, Table, func, select
from sqlalchemy.exc import DBAPIError

from .db import Database, metadata
from .errors import Unavailable
from .logs import LOGGER_NAME, log_event

log = logging.getLogger(LOGGER_NAME)

jti_seen = Table(
    "jti_seen", metadata,
    Column("key", String(64), primary_key=True),       # sha256 hex of [iss, jti]
    Column("expires_at", Double, nullable=False),      # epoch seconds: exp + leeway
    Index("ix_jti_seen_expires_at", "expires_at"),
)


def replay_key(iss: str, jti: str) -> str:
    """The row key of a pair: unambiguous (JSON array), fixed length."""
    return hashlib.sha256(json.dumps([iss, jti]).encode()).hexdigest()


class DatabaseReplayCache:
    """Accepted ``jti`` values in the shared database, each until its token expires."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        db.add_purge("jti-seen", jti_seen.c.expires_at, cutoff=clock)

    def remember(self, iss: str, jti: str, until: float) -> bool:
        """Record ``(iss, jti)`` until ``until``; return False if it was already recorded.

        :raises Unavailable: the database could not be written (the token was not accepted).
        """
        now = self._clock()
        insert = self._db.insert(jti_seen).values(key=replay_key(iss, jti), expires_at=until)
        stmt = insert.on_conflict_do_update(
            index_elements=["key"], set_={"expires_at": insert.excluded.expires_at},
            where=jti_seen.c.expires_at < now,
        ).returning(jti_seen.c.key)
        try:
            with self._db.begin() as conn:
                accepted = conn.execute(stmt).first() is not None
        except DBAPIError as exc:
            log_event(log, logging.ERROR, "auth.replay_cache_unavailable",
                      error=type(exc.orig or exc).__name__)
            raise Unavailable("the service cannot reach its database right now; the request "
                              "was not processed, please retry") from None
        self._db.maybe_purge()
        return accepted

    def __len__(self) -> int:
        """Pairs remembered and not expired."""
        with self._db.read() as conn:
            count = conn.execute(select(func.count()).select_from(jti_seen)
                                 .where(jti_seen.c.expires_at >= self._clock())).scalar()
        return int(count or 0)
