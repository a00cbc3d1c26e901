"""Durable feedback storage behind ``CDS_DATABASE_URL``: SQLite (default) or PostgreSQL.

Two tables (SQLAlchemy Core, on the shared :mod:`cds_service.db` schema, created or migrated at
start-up):

- ``issued_cards``: one row per card uuid the service returned (service, kind, rule ids,
  indicator, suggestion uuids, time). Nothing that identifies a patient.
- ``feedback``: one row per (card uuid, outcome, outcomeTimestamp); a repeat of the same triple is
  ignored (``INSERT ... ON CONFLICT DO NOTHING``). ``known`` says whether the card uuid had been
  issued by this service when the feedback arrived.

Durability. :meth:`FeedbackStore.store_feedback` returns only after its transaction committed
(SQLite: WAL with ``synchronous=FULL``, so the commit is on disk), which is when the web layer may
answer 200. Issued cards are different: the hook path must stay fast, so (outside in-memory
databases) :meth:`FeedbackStore.record_cards` only queues the rows and a background thread writes
them in batches. Rows still in that queue are lost if the process is killed (``SIGKILL``, power
loss); a normal stop (``SIGTERM`` to gunicorn, interpreter exit) flushes them. Feedback about such a
card is still stored, and reported under the kind ``unknown``.

Several processes may share one SQLite file: every write transaction starts with
``BEGIN IMMEDIATE`` and waits up to ``busy_timeout`` (5 s) for the write lock (:mod:`..db`).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import queue
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    case,
    func,
    select,
)
from sqlalchemy.engine import Connection, Engine

from ..db import (  # noqa: F401 (schema names re-exported for the store's callers and tests)
    SCHEMA_VERSION,
    Database,
    UtcDateTime,
    metadata,
    migration,
    normalise_url,
    schema_version,
)
from ..errors import Forbidden, TooManyRequests
from ..logs import LOGGER_NAME, log_event
from .model import FeedbackItem

log = logging.getLogger(LOGGER_NAME)

UNKNOWN_KIND = "unknown"
_IN_CHUNK = 500  # uuids per "IN (...)" lookup


issued_cards = Table(
    "issued_cards", metadata,
    Column("uuid", String, primary_key=True),
    Column("service_id", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("rules", Text, nullable=False),             # comma-joined rule ids
    Column("indicator", String),
    Column("suggestion_uuids", Text, nullable=False),  # comma-joined
    Column("issued_at", UtcDateTime, nullable=False),
    Column("client", String),  # client_tag() of the JWT iss the card went to; NULL: auth off
    Index("ix_issued_cards_issued_at", "issued_at"),
)

feedback = Table(
    "feedback", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("card_uuid", String, nullable=False),
    Column("service_id", String, nullable=False),
    Column("outcome", String, nullable=False),
    Column("outcome_timestamp", UtcDateTime, nullable=False),
    Column("accepted_suggestions", Text, nullable=False),  # JSON array of suggestion uuids
    Column("override_code", String),
    Column("override_system", Text),
    Column("override_display", Text),
    Column("has_comment", Boolean, nullable=False),
    Column("user_comment", Text),
    Column("received_at", UtcDateTime, nullable=False),
    Column("known", Boolean, nullable=False),
    UniqueConstraint("card_uuid", "outcome", "outcome_timestamp", name="uq_feedback_outcome"),
    Index("ix_feedback_outcome_timestamp", "outcome_timestamp"),
)

# Feedback items per client per fixed minute, counted where every instance sees them (this
# database): one row per (client, minute), incremented atomically (INSERT ... ON CONFLICT DO
# UPDATE ... RETURNING, SQLite >= 3.35 and PostgreSQL). Rows older than an hour are purged.
feedback_rate = Table(
    "feedback_rate", metadata,
    Column("client", String, primary_key=True),
    Column("window_start", BigInteger, primary_key=True, autoincrement=False),  # epoch seconds
    Column("item_count", Integer, nullable=False),
)
RATE_WINDOW = 60  # seconds


@migration(2)
def _issued_cards_client(conn: Connection) -> None:
    """Version 2: ``issued_cards.client``, so feedback is bound to the client that got the card
    (cards issued before it have NULL, the value of an unauthenticated client)."""
    conn.exec_driver_sql("ALTER TABLE issued_cards ADD COLUMN client VARCHAR")


def client_tag(iss: str | None) -> str | None:
    """What is stored for a client: a SHA-256 prefix of its JWT ``iss`` (``None`` when auth is
    off). Issuer URLs are not secret; the tag keeps the column short and fixed in size."""
    if iss is None:
        return None
    return hashlib.sha256(iss.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True)
class StoreResult:
    """What one :meth:`FeedbackStore.store_feedback` call did."""

    stored: int      # new rows
    duplicates: int  # items already stored (same card, outcome, outcomeTimestamp)
    unknown: int     # items whose card uuid this service never issued


@dataclass(frozen=True)
class ReportRow:
    """Outcomes of one (service, card kind). Counts are feedback events, not distinct cards."""

    service_id: str
    kind: str
    issued: int
    accepted: int
    overridden: int
    acceptance_rate: float | None  # accepted / (accepted + overridden); None when both are 0
    top_override_reasons: tuple[tuple[str, int], ...]  # (display or code, count), at most 3
    comments: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service_id,
            "kind": self.kind,
            "issued": self.issued,
            "accepted": self.accepted,
            "overridden": self.overridden,
            "acceptanceRate": self.acceptance_rate,
            "topOverrideReasons": [{"reason": r, "count": n}
                                   for r, n in self.top_override_reasons],
            "comments": self.comments,
        }


class FeedbackStore:
    """Issued cards and feedback in one database; thread-safe, one per process.

    :param database: the process's :class:`~cds_service.db.Database` (the app shares one), or a
        URL for a store of its own: ``sqlite:///path.db``, ``sqlite://`` (in memory, for tests),
        ``postgresql://user:pw@host/db`` (run through psycopg 3).
    :param background: write issued cards from a background thread; default: yes, except for
        in-memory SQLite.
    :param clock: returns "now" as an aware datetime (tests); default the real clock.
    :param retention_days: issued cards and feedback older than this (by the time they were
        issued or received) are purged (``CDS_FEEDBACK_RETENTION_DAYS``).
    :param rate_limit: feedback items one authenticated client may send per minute, counted
        across every instance on this database (``CDS_FEEDBACK_RATE_LIMIT``); 0: no limit.
    :raises ConfigError: the URL is not one this store can use.
    :raises StartupError: the database's schema is newer than this code.
    """

    def __init__(self, database: Database | str, *, background: bool | None = None,
                 clock: Callable[[], datetime] | None = None, retention_days: int = 365,
                 rate_limit: int = 0) -> None:
        self._owns_db = not isinstance(database, Database)
        self.db = Database(database) if isinstance(database, str) else database
        self._clock = clock or (lambda: datetime.now(UTC))
        self._closed = False
        if background is None:
            background = not self.db.in_memory
        self._writer = _CardWriter(self._write_cards) if background else None
        self._rate_limit = rate_limit
        keep = timedelta(days=retention_days)
        # Purges run now and then after writes, on every instance (db.maybe_purge): a DELETE of
        # rows past the cutoff is the same whoever runs it.
        self.db.add_purge("issued-cards", issued_cards.c.issued_at,
                          cutoff=lambda: self._clock() - keep)
        self.db.add_purge("feedback", feedback.c.received_at, cutoff=lambda: self._clock() - keep)
        self.db.add_purge("feedback-rate", feedback_rate.c.window_start,
                          cutoff=lambda: int(self._clock().timestamp()) - 3600)
        _OPEN_STORES.add(self)

    @property
    def dialect(self) -> str:
        return self.db.dialect

    @property
    def _engine(self) -> Engine:
        return self.db.engine

    # ----- the hook path ----------------------------------------------------------------------

    def record_cards(self, service_id: str, cards: Sequence[dict[str, Any]],
                     client: str | None = None) -> None:
        """Remember the cards a hook call returned to ``client`` (its JWT ``iss``; ``None`` when
        auth is off). Never raises: the hook answer comes first."""
        try:
            now = self._clock()
            tag = client_tag(client)
            rows = [{**row, "client": tag} for card in cards
                    if (row := card_row(service_id, card, now))]
            if not rows:
                return
            if self._writer is not None:
                self._writer.put(rows)
            else:
                self._write_cards(rows)
        except Exception as exc:  # a broken store must not break hook calls
            log_event(log, logging.ERROR, "feedback.cards_not_recorded",
                      service=service_id, error=type(exc).__name__)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until queued issued cards are written; False if that took longer than timeout."""
        return self._writer.flush(timeout) if self._writer is not None else True

    # ----- the feedback endpoint --------------------------------------------------------------

    def store_feedback(self, service_id: str, items: Sequence[FeedbackItem],
                       client: str | None = None) -> StoreResult:
        """Store feedback items from ``client`` (its JWT ``iss``) in one transaction; return
        after it is committed.

        :raises TooManyRequests: the client is over its rate limit (nothing stored).
        :raises Forbidden: an item's card was issued to another client (nothing stored).
        :raises sqlalchemy.exc.DBAPIError: the database could not be written (nothing stored).
        """
        tag = client_tag(client)
        if self._rate_limit and tag is not None:
            self._count(tag, len(items))
        received = self._clock()
        # RETURNING tells new rows from duplicates the same way on every backend (rowcount
        # does not: SQLAlchemy's implicit RETURNING hides it on psycopg).
        stmt = self.db.insert(feedback).on_conflict_do_nothing(
            index_elements=["card_uuid", "outcome", "outcome_timestamp"]
        ).returning(feedback.c.id)
        stored = 0
        with self.db.begin() as conn:
            issued = _issued_among(conn, {item.card for item in items})
            for index, item in enumerate(items):
                if item.card in issued and issued[item.card] != tag:
                    raise Forbidden(f"card {item.card!r} was not issued to this client",
                                    where=f"feedback[{index}].card")
            for item in items:
                row = _feedback_row(service_id, item, received, item.card in issued)
                stored += len(conn.execute(stmt, row).all())
        unknown = sum(1 for item in items if item.card not in issued)
        self.db.maybe_purge()
        return StoreResult(stored=stored, duplicates=len(items) - stored, unknown=unknown)

    def _count(self, tag: str, items: int) -> None:
        """Add ``items`` to the client's count for this minute; raise when over the limit."""
        now = self._clock().timestamp()
        window = int(now) // RATE_WINDOW * RATE_WINDOW
        stmt = self.db.insert(feedback_rate).values(
            client=tag, window_start=window, item_count=items,
        ).on_conflict_do_update(
            index_elements=["client", "window_start"],
            set_={"item_count": feedback_rate.c.item_count + items},
        ).returning(feedback_rate.c.item_count)
        with self.db.begin() as conn:
            total = conn.execute(stmt).scalar_one()
        if total > self._rate_limit:
            retry = max(1, int(window + RATE_WINDOW - now + 0.999))
            raise TooManyRequests(
                f"more than {self._rate_limit} feedback items this minute from this client; "
                f"retry in {retry} s", retry_after=retry, where="feedback")

    # ----- the report -------------------------------------------------------------------------

    def report(self, since: datetime | None = None) -> list[ReportRow]:
        """Per (service, card kind): cards issued, accepted, overridden, rate, reasons, comments.

        Cards count when issued at or after ``since``; feedback when its outcomeTimestamp is.
        Feedback about a card uuid not in ``issued_cards`` is counted under the kind "unknown".
        A naive ``since`` is taken as UTC.
        """
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        kind = func.coalesce(issued_cards.c.kind, UNKNOWN_KIND).label("kind")
        joined = feedback.outerjoin(issued_cards, issued_cards.c.uuid == feedback.c.card_uuid)
        issued_q = select(issued_cards.c.service_id, issued_cards.c.kind, func.count()) \
            .group_by(issued_cards.c.service_id, issued_cards.c.kind)
        outcome_q = select(
            feedback.c.service_id, kind,
            func.sum(case((feedback.c.outcome == "accepted", 1), else_=0)),
            func.sum(case((feedback.c.outcome == "overridden", 1), else_=0)),
            func.sum(case((feedback.c.has_comment, 1), else_=0)),
        ).select_from(joined).group_by(feedback.c.service_id, kind)
        reason_q = select(
            feedback.c.service_id, kind, feedback.c.override_system, feedback.c.override_code,
            func.max(feedback.c.override_display), func.count(),
        ).select_from(joined).where(
            feedback.c.outcome == "overridden", feedback.c.override_code.is_not(None)
        ).group_by(feedback.c.service_id, kind, feedback.c.override_system,
                   feedback.c.override_code)
        if since is not None:
            issued_q = issued_q.where(issued_cards.c.issued_at >= since)
            outcome_q = outcome_q.where(feedback.c.outcome_timestamp >= since)
            reason_q = reason_q.where(feedback.c.outcome_timestamp >= since)
        with self.db.read() as conn:
            issued_rows = conn.execute(issued_q).all()
            outcome_rows = conn.execute(outcome_q).all()
            reason_rows = conn.execute(reason_q).all()
        return _assemble(issued_rows, outcome_rows, reason_rows)

    # ----- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Write queued issued cards, then release the database (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.close()
        if self._owns_db:
            self.db.close()
        _OPEN_STORES.discard(self)

    def _write_cards(self, rows: list[dict[str, Any]]) -> None:
        stmt = self.db.insert(issued_cards).on_conflict_do_nothing(index_elements=["uuid"])
        with self.db.begin() as conn:
            conn.execute(stmt, rows)



def card_row(service_id: str, card: Any, now: datetime) -> dict[str, Any] | None:
    """Return the ``issued_cards`` row for a card, or None when it has no uuid (no feedback then).

    Only what the report needs is kept; summaries and details may name the patient, so never.
    """
    if not isinstance(card, dict):
        return None
    uuid = card.get("uuid")
    if not isinstance(uuid, str) or not uuid:
        return None
    tma_card, assessment = _extension(card, "tma-card"), _extension(card, "tma-bone-assessment")
    rules = tma_card.get("rules") or assessment.get("rules") or []
    suggestions = card.get("suggestions")
    indicator = card.get("indicator")
    return {
        "uuid": uuid,
        "service_id": service_id,
        "kind": card_kind(card),
        "rules": ",".join(r for r in rules if isinstance(r, str)) if isinstance(rules, list)
        else "",
        "indicator": indicator if isinstance(indicator, str) else None,
        "suggestion_uuids": ",".join(
            s["uuid"] for s in suggestions
            if isinstance(s, dict) and isinstance(s.get("uuid"), str)
        ) if isinstance(suggestions, list) else "",
        "issued_at": now,
    }


def card_kind(card: Any) -> str:
    """The card's kind (``extension["tma-card"].kind``: assessment, next-tests, ...), or
    ``unknown``: what the report and the metrics group cards by."""
    kind = _extension(card, "tma-card").get("kind") if isinstance(card, dict) else None
    return kind if isinstance(kind, str) and kind else UNKNOWN_KIND


def _extension(card: dict[str, Any], key: str) -> dict[str, Any]:
    extension = card.get("extension")
    value = extension.get(key) if isinstance(extension, dict) else None
    return value if isinstance(value, dict) else {}


# ===== Implementation details ===================================================================


def _issued_among(conn: Connection, uuids: Iterable[str]) -> dict[str, str | None]:
    """The issued cards among ``uuids``: uuid -> the client tag it was issued to."""
    wanted = sorted(set(uuids))
    found: dict[str, str | None] = {}
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start:start + _IN_CHUNK]
        rows = conn.execute(select(issued_cards.c.uuid, issued_cards.c.client)
                            .where(issued_cards.c.uuid.in_(chunk)))
        found.update((uuid, client) for uuid, client in rows)
    return found


def _feedback_row(service_id: str, item: FeedbackItem, received: datetime,
                  known: bool) -> dict[str, Any]:
    reason = item.override_reason
    return {
        "card_uuid": item.card,
        "service_id": service_id,
        "outcome": item.outcome,
        "outcome_timestamp": item.outcome_timestamp,
        "accepted_suggestions": json.dumps(list(item.accepted_suggestions)),
        "override_code": reason.code if reason else None,
        "override_system": reason.system if reason else None,
        "override_display": reason.display if reason else None,
        "has_comment": bool(reason and reason.comment),
        "user_comment": reason.comment if reason else None,
        "received_at": received,
        "known": known,
    }


def _assemble(issued_rows: Sequence[Any], outcome_rows: Sequence[Any],
              reason_rows: Sequence[Any]) -> list[ReportRow]:
    counts: dict[tuple[str, str], dict[str, Any]] = {}

    def entry(service_id: str, kind: str) -> dict[str, Any]:
        return counts.setdefault((service_id, kind), {
            "issued": 0, "accepted": 0, "overridden": 0, "comments": 0, "reasons": {}})

    for service_id, kind, n in issued_rows:
        entry(service_id, kind)["issued"] = int(n)
    for service_id, kind, accepted, overridden, comments in outcome_rows:
        e = entry(service_id, kind)
        e["accepted"], e["overridden"] = int(accepted or 0), int(overridden or 0)
        e["comments"] = int(comments or 0)
    for service_id, kind, _system, code, display, n in reason_rows:
        reasons = entry(service_id, kind)["reasons"]
        label = display or code
        reasons[label] = reasons.get(label, 0) + int(n)
    rows = []
    for (service_id, kind), e in sorted(counts.items()):
        decided = e["accepted"] + e["overridden"]
        top = sorted(e["reasons"].items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        rows.append(ReportRow(
            service_id=service_id, kind=kind, issued=e["issued"], accepted=e["accepted"],
            overridden=e["overridden"],
            acceptance_rate=e["accepted"] / decided if decided else None,
            top_override_reasons=tuple(top), comments=e["comments"],
        ))
    return rows


class _CardWriter:
    """A daemon thread that writes queued issued-card rows in batches.

    After the first row arrives the thread sleeps ``linger`` seconds, then writes everything
    queued in one transaction: under load one commit serves many hook calls. While it sleeps it
    does not wait on the queue, so a hook call's ``put`` wakes no thread (each wake-up is an
    interpreter-lock hand-over on the hook path). A flush or stop request ends the sleep at once.
    At rest a card is written within ``linger``. The queue is bounded; past it rows are dropped
    and counted (the hook path never waits on the database).
    """

    _STOP = object()

    def __init__(self, write: Callable[[list[dict[str, Any]]], None], *,
                 max_pending: int = 10_000, batch: int = 500, linger: float = 0.25) -> None:
        self._write = write
        self._linger = linger
        self._max_pending = max_pending
        self._batch = batch
        self._start_lock = threading.Lock()
        self._pid: int | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None
        self._hurry = threading.Event()
        self.dropped = 0

    def put(self, rows: list[dict[str, Any]]) -> None:
        self._ensure_thread()
        for row in rows:
            try:
                self._queue.put_nowait(row)
            except queue.Full:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log_event(log, logging.WARNING, "feedback.cards_dropped",
                              dropped=self.dropped, reason="issued-card queue is full")

    def flush(self, timeout: float) -> bool:
        if self._thread is None or self._pid != os.getpid():
            return True
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        self._hurry.set()
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        if self._thread is None or self._pid != os.getpid():
            return
        try:
            self._queue.put(self._STOP, timeout=timeout)
        except queue.Full:
            pass
        self._hurry.set()
        self._thread.join(timeout)

    def _ensure_thread(self) -> None:
        pid = os.getpid()
        if self._thread is not None and self._pid == pid:
            return
        with self._start_lock:
            if self._thread is not None and self._pid == pid:
                return
            if self._pid != pid:  # first use, or first use after a fork: the parent's are gone
                self._queue = queue.Queue(maxsize=self._max_pending)
            self._pid = pid
            self._thread = threading.Thread(target=self._run, name="cds-issued-cards",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            pending = [self._queue.get()]
            if isinstance(pending[0], dict):
                self._hurry.wait(self._linger)
            self._hurry.clear()
            while len(pending) < self._batch:
                try:
                    pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows = [p for p in pending if isinstance(p, dict)]
            if rows:
                try:
                    self._write(rows)
                except Exception as exc:
                    log_event(log, logging.ERROR, "feedback.cards_not_recorded",
                              cards=len(rows), error=type(exc).__name__, detail=str(exc)[:200])
            for p in pending:
                if isinstance(p, threading.Event):
                    p.set()
            if any(p is self._STOP for p in pending):
                return


_OPEN_STORES: weakref.WeakSet[FeedbackStore] = weakref.WeakSet()


@atexit.register
def _close_open_stores() -> None:
    for store in list(_OPEN_STORES):
        with contextlib.suppress(Exception):  # exiting anyway; nothing left to tell
            store.close()

