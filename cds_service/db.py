"""The service's one database (``CDS_DATABASE_URL``): engine, schema, migrations, expiry.

All state that several worker processes or instances must share lives here: issued cards and
feedback (``feedback.store``), the JWT ``jti`` replay cache (``replay_cache``), and whatever is
added later (app sessions, rate-limit counters). SQLite (one file shared by the workers of one
host) or PostgreSQL (many instances behind a load balancer). The app factory opens **one**
:class:`Database` per process and hands it to every store.

Schema. Every table is defined on :data:`metadata`. At start-up :meth:`Database.ensure_schema`
imports every module named in :data:`TABLE_MODULES`, creates the tables that do not exist yet
and runs the migrations the database has not had, in one transaction that only one process at a
time can hold: PostgreSQL ``pg_advisory_xact_lock``; SQLite ``BEGIN IMMEDIATE`` (the write lock).
So any number of instances may start at once against one database.

**Adding a table** (say ``smart_sessions``):

1. Define it on this module's ``metadata`` in the module that owns it::

       from ..db import metadata
       smart_sessions = Table("smart_sessions", metadata, Column("id", String, primary_key=True),
                              Column("expires_at", UtcDateTime, nullable=False), ...)

2. Add that module's dotted name to :data:`TABLE_MODULES`. Nothing else: ``create_all`` creates
   a missing table on the next start, on new and on existing databases alike.
3. Write through the store's :class:`Database`: ``with db.begin() as conn`` for a write (SQLite:
   takes the write lock at once, waits up to 5 s), ``with db.read() as conn`` for a read-only
   transaction, ``db.insert(table)`` for a dialect insert with ``on_conflict_do_nothing`` /
   ``on_conflict_do_update`` (atomic "insert if absent" on both backends).
4. Rows that expire: ``db.add_purge("smart-sessions", smart_sessions.c.expires_at,
   cutoff=lambda: now())``. Every process then deletes rows older than the cutoff at most once
   per ``purge_interval`` (``db.maybe_purge()``, called after writes), and each job runs on one
   instance at a time (PostgreSQL ``pg_try_advisory_xact_lock``; SQLite's write lock). A
   ``DELETE ... WHERE column < cutoff`` is harmless when two instances run it anyway.

**Changing an existing table** (a new column, an index on old data): bump
:data:`SCHEMA_VERSION` and register the step with ``@migration(N)`` (a function of the
connection) in the owning module; never edit an applied step. A database whose version is newer
than the code refuses to start. Two branches that both take the next number collide at import
(``migration`` refuses a duplicate), not silently.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Table,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

from .errors import ConfigError, StartupError
from .logs import LOGGER_NAME, log_event

log = logging.getLogger(LOGGER_NAME)

# Modules whose tables live on ``metadata``; ensure_schema imports them all, so every process
# creates every table whichever store it opened first.
TABLE_MODULES: tuple[str, ...] = (
    "cds_service.feedback.store",
    "cds_service.replay_cache",
    "cds_service.smart.sessions",
)

SCHEMA_VERSION = 2  # bump together with a new @migration(N); 2: issued_cards.client
_PG_LOCK_KEY = 0x0CD5F33D  # pg_advisory_xact_lock key that serialises schema set-up
PURGE_INTERVAL = 60.0  # seconds between two purge rounds of one process


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as naive UTC (same text in SQLite, ``timestamp`` in PostgreSQL)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UtcDateTime needs an aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData()

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", UtcDateTime, nullable=False),
)

# Version -> function(connection) bringing the schema from version-1 up to it (see the docstring).
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}


def migration(version: int) -> Callable[[Callable[[Connection], None]], Callable[[Connection],
                                                                                   None]]:
    """Register the step that brings the schema to ``version`` (2, 3, ...)."""
    def register(step: Callable[[Connection], None]) -> Callable[[Connection], None]:
        if version in MIGRATIONS and MIGRATIONS[version] is not step:
            raise RuntimeError(f"two schema migrations claim version {version}")
        MIGRATIONS[version] = step
        return step
    return register


@dataclass(frozen=True)
class _Purge:
    name: str
    column: ColumnElement[Any]
    cutoff: Callable[[], Any]

    @property
    def lock_key(self) -> int:
        digest = hashlib.sha256(f"cds-purge:{self.name}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)


class Database:
    """One engine on ``CDS_DATABASE_URL`` for the whole process; thread-safe.

    :param url: ``sqlite:///path.db``, ``sqlite://`` (in memory: one connection, used in turns;
        tests), ``postgresql://user:pw@host/db`` (run through psycopg 3).
    :param purge_interval: seconds between two purge rounds of this process.
    :raises ConfigError: the URL is not one the service can use.
    :raises StartupError: the database's schema is newer than this code.
    :raises sqlalchemy.exc.DBAPIError: the database cannot be reached.
    """

    def __init__(self, url: str, *, purge_interval: float = PURGE_INTERVAL) -> None:
        self.url, self.in_memory = normalise_url(url)
        self.engine = _make_engine(self.url, self.in_memory)
        # One in-memory SQLite connection is shared by every thread: take turns.
        self._guard: AbstractContextManager[Any] = (threading.Lock() if self.in_memory
                                                    else nullcontext())
        self._purges: list[_Purge] = []
        self._purge_interval = purge_interval
        self._purge_lock = threading.Lock()
        self._last_purge = time.monotonic()
        self._closed = False
        try:
            self.ensure_schema()
        except BaseException:
            self.engine.dispose()
            raise
        _OPEN.add(self)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # ----- transactions -----------------------------------------------------------------------

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction, committed on leaving (SQLite: the write lock is taken at once)."""
        with self._guard, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (SQLite: a plain BEGIN, so readers never wait for the lock)."""
        with self._guard, self.engine.connect().execution_options(cds_read_only=True) as conn, \
                conn.begin():
            yield conn

    def insert(self, table: Table) -> Any:
        """The dialect's INSERT for ``table`` (it has ``on_conflict_do_nothing/_update``)."""
        return (postgresql if self.dialect == "postgresql" else sqlite).insert(table)

    def ping(self) -> None:
        """Run ``SELECT 1``. :raises sqlalchemy.exc.DBAPIError: the database is not usable."""
        with self._guard, self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # ----- schema -----------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create missing tables and migrate, once even when several processes start together."""
        for name in TABLE_MODULES:
            importlib.import_module(name)
        missing = set(range(2, SCHEMA_VERSION + 1)) - set(MIGRATIONS)
        if missing or max(MIGRATIONS, default=1) > SCHEMA_VERSION:
            raise RuntimeError(f"SCHEMA_VERSION {SCHEMA_VERSION} does not match the registered "
                               f"migrations {sorted(MIGRATIONS)}")
        with self.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            metadata.create_all(conn)
            current = conn.execute(select(func.max(schema_version.c.version))).scalar()
            if current is None:
                conn.execute(schema_version.insert(),
                             {"version": SCHEMA_VERSION, "applied_at": datetime.now(UTC)})
                return
            if current > SCHEMA_VERSION:
                raise StartupError(f"the database has schema version {current}, newer than "
                                   f"this service's {SCHEMA_VERSION}; upgrade the service")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version](conn)
                conn.execute(schema_version.insert(),
                             {"version": version, "applied_at": datetime.now(UTC)})

    # ----- expiry -----------------------------------------------------------------------------

    def add_purge(self, name: str, column: ColumnElement[Any],
                  cutoff: Callable[[], Any]) -> None:
        """Have rows whose ``column`` is below ``cutoff()`` deleted now and then (see above)."""
        if any(p.name == name for p in self._purges):
            return
        self._purges.append(_Purge(name, column, cutoff))

    def purge_expired(self) -> dict[str, int]:
        """Run every purge job now; return rows deleted per job (skipped jobs: absent).

        A job another instance is running right now is skipped (PostgreSQL); a failing job is
        logged and the others still run.
        """
        deleted: dict[str, int] = {}
        for job in list(self._purges):
            table = job.column.table  # type: ignore[attr-defined]
            try:
                with self.begin() as conn:
                    if self.dialect == "postgresql" and not conn.execute(
                            text("SELECT pg_try_advisory_xact_lock(:key)"),
                            {"key": job.lock_key}).scalar():
                        continue
                    result = conn.execute(table.delete().where(job.column < job.cutoff()))
                    deleted[job.name] = int(result.rowcount or 0)
            except Exception as exc:  # expiry must never break the request that triggered it
                log_event(log, logging.ERROR, "db.purge_failed", job=job.name,
                          error=type(exc).__name__)
        return deleted

    def maybe_purge(self) -> None:
        """Run :meth:`purge_expired` if ``purge_interval`` has passed; never waits for it."""
        if not self._purges or time.monotonic() - self._last_purge < self._purge_interval:
            return
        if not self._purge_lock.acquire(blocking=False):
            return  # another thread of this process is purging
        try:
            self._last_purge = time.monotonic()
            self.purge_expired()
        finally:
            self._purge_lock.release()

    # ----- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Release the connections (idempotent)."""
        if not self._closed:
            self._closed = True
            self.engine.dispose()
            _OPEN.discard(self)

    def _after_fork(self) -> None:
        # Pooled connections belong to the parent process; never use them in the child.
        self.engine.dispose(close=False)


def normalise_url(raw: str) -> tuple[URL, bool]:
    """Parse the URL, send PostgreSQL through psycopg 3, and say whether it is in-memory SQLite."""
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError("CDS_DATABASE_URL is not a database URL (expected sqlite:///PATH "
                          "or postgresql://USER@HOST/DB)") from None
    backend = url.drivername.split("+", 1)[0]
    if backend in {"postgresql", "postgres"}:
        if backend == "postgres" or "+" not in url.drivername:
            url = url.set(drivername="postgresql+psycopg")
        return url, False
    if backend != "sqlite":
        raise ConfigError(f"CDS_DATABASE_URL must be a sqlite or postgresql URL, not {backend}://")
    database = url.database or ""
    memory = database in {"", ":memory:"} or url.query.get("mode") == "memory"
    if not memory and not database.startswith("file:"):
        Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    return url, memory


def _make_engine(url: URL, memory: bool) -> Engine:
    if url.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    if memory:
        engine = create_engine(url, poolclass=StaticPool,
                               connect_args={"check_same_thread": False})
    else:
        engine = create_engine(url, connect_args={"timeout": 5.0})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's BEGIN (below) decide transactions, not the sqlite3 module.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=5000")
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front (waiting busy_timeout for it), so two processes
        # never both hold a read lock and then fail to upgrade it.
        read_only = conn.get_execution_options().get("cds_read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


_OPEN: weakref.WeakSet[Database] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for database in list(_OPEN):
        database._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
