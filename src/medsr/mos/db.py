"""Where ratings live: SQLAlchemy tables on SQLite (default, WAL mode) or PostgreSQL (by URL).

Every statement is built by SQLAlchemy with bound parameters. A rating is unique per (rater, item):
a double submit inserts nothing the second time (``ON CONFLICT DO NOTHING`` on both databases), so
counts stay exact under concurrent submissions. On SQLite, writes start with ``BEGIN IMMEDIATE`` and
wait on a busy timeout instead of failing with "database is locked".
"""

from __future__ import annotations

import datetime as _dt
import json
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (CheckConstraint, DateTime, Float, ForeignKey, Integer, SmallInteger, String, Text,
                        UniqueConstraint, create_engine, event, func, select, text)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from medsr.errors import MedsrError
from medsr.mos.study import Study

SQLITE_NAME = "mos.sqlite"
_ENROLMENT_LOCK = 0x6D65_6473_725F_6D6F  # PostgreSQL advisory lock key of enrolments ("medsr_mo")


class Base(DeclarativeBase):
    pass


class Rater(Base):
    __tablename__ = "mos_rater"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[str] = mapped_column(String(32), index=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    alias: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime(timezone=True))
    calibration: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON {item_id: score}


class Assignment(Base):
    """The trial order of one rater and, per trial, the order its items were shown in."""

    __tablename__ = "mos_assignment"
    rater_id: Mapped[int] = mapped_column(ForeignKey("mos_rater.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1-based
    trial_id: Mapped[str] = mapped_column(String(32))
    item_order: Mapped[str] = mapped_column(Text)  # JSON list of item ids


class Rating(Base):
    __tablename__ = "mos_rating"
    __table_args__ = (UniqueConstraint("rater_id", "item_id", name="uq_mos_rating_rater_item"),
                      CheckConstraint("score BETWEEN 1 AND 5", name="ck_mos_rating_score"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("mos_rater.id", ondelete="CASCADE"), index=True)
    trial_id: Mapped[str] = mapped_column(String(32))
    item_id: Mapped[str] = mapped_column(String(32))
    score: Mapped[int] = mapped_column(SmallInteger)
    shown_at: Mapped[int] = mapped_column(SmallInteger)  # 1-based place of the item on the rater's screen
    viewport_width: Mapped[int] = mapped_column(Integer)
    viewport_height: Mapped[int] = mapped_column(Integer)
    device_pixel_ratio: Mapped[float] = mapped_column(Float)
    trial_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)  # time from display to submit
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Viewport:
    width: int
    height: int
    device_pixel_ratio: float


def database_url(study: Study, url: str | None) -> str:
    """The SQLAlchemy URL to use: ``url`` (``postgresql://`` means psycopg 3), else SQLite in the study folder."""
    if not url:
        return f"sqlite:///{(study.folder / SQLITE_NAME).resolve()}"
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


class Database:
    """The ratings store of one study; thread-safe (one session per call)."""

    def __init__(self, url: str, study: Study) -> None:
        self.study = study
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise MedsrError(f"--db: not a database URL: {url!r}") from None
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            self.engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})
            _sqlite_wal_and_immediate_writes(self.engine)
        elif self.dialect == "postgresql":
            self.engine = create_engine(url, pool_size=10, max_overflow=40, pool_pre_ping=True)
        else:
            raise MedsrError(f"--db: {self.dialect} is not supported (use SQLite or PostgreSQL)")
        self.writer = self.engine.execution_options(medsr_write=True)
        try:
            Base.metadata.create_all(self.engine)
        except OperationalError as exc:
            raise MedsrError(f"--db: cannot open {parsed.render_as_string(hide_password=True)} "
                             f"({str(exc.orig).strip().splitlines()[0]})") from None

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Session]:
        with Session(self.writer if write else self.engine, expire_on_commit=False) as session:
            with session.begin():
                yield session

    # -- raters ---------------------------------------------------------------------------------
    def add_rater(self, alias: str, token: str, *, max_raters: int | None = None) -> Rater | None:
        """A new rater with a freshly shuffled trial order and, per trial, item order (both stored).

        With ``max_raters``, nothing is added (returns None) once the study has that many raters;
        the count and the insert are one serialised write, so simultaneous enrolments cannot
        overshoot it (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction advisory lock)."""
        rng = random.SystemRandom()
        trials = list(self.study.trials)
        rng.shuffle(trials)
        with self._session(write=True) as session:
            if max_raters is not None:
                if self.dialect == "postgresql":
                    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ENROLMENT_LOCK})
                present = session.scalar(select(func.count()).select_from(Rater).where(Rater.study_id == self.study.study_id))
                if present >= max_raters:
                    return None
            rater = Rater(study_id=self.study.study_id, token=token, alias=alias, created_at=_now())
            session.add(rater)
            session.flush()
            for position, trial in enumerate(trials, start=1):
                order = [item.item_id for item in trial.items]
                rng.shuffle(order)
                session.add(Assignment(rater_id=rater.id, position=position, trial_id=trial.trial_id,
                                       item_order=json.dumps(order)))
        return rater

    def rater_by_token(self, token: str) -> Rater | None:
        with self._session() as session:
            return session.scalar(select(Rater).where(Rater.token == token, Rater.study_id == self.study.study_id))

    def raters(self) -> list[Rater]:
        with self._session() as session:
            return list(session.scalars(select(Rater).where(Rater.study_id == self.study.study_id).order_by(Rater.id)))

    def assignment(self, rater_id: int, position: int) -> Assignment | None:
        with self._session() as session:
            return session.get(Assignment, (rater_id, position))

    def assignments(self, rater_id: int) -> list[Assignment]:
        with self._session() as session:
            return list(session.scalars(select(Assignment).where(Assignment.rater_id == rater_id).order_by(Assignment.position)))

    def save_calibration(self, rater_id: int, scores: dict[str, int]) -> dict[str, int]:
        """Store the calibration answers once; returns the stored ones (the first answer stands)."""
        with self._session(write=True) as session:
            rater = session.get(Rater, rater_id)
            if rater.calibration is None:
                rater.calibration = json.dumps(scores, sort_keys=True)
            return json.loads(rater.calibration)

    # -- ratings --------------------------------------------------------------------------------
    def add_ratings(self, rater_id: int, trial_id: str, scores: Sequence[tuple[str, int, int]], viewport: Viewport,
                    trial_seconds: float | None = None) -> int:
        """Insert (item_id, score, shown_at) ratings of one trial; returns how many were new."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        now = _now()
        rows = [dict(rater_id=rater_id, trial_id=trial_id, item_id=item_id, score=score, shown_at=shown_at,
                     viewport_width=viewport.width, viewport_height=viewport.height,
                     device_pixel_ratio=viewport.device_pixel_ratio, trial_seconds=trial_seconds, created_at=now)
                for item_id, score, shown_at in scores]
        statement = insert(Rating).values(rows).on_conflict_do_nothing(index_elements=["rater_id", "item_id"])
        with self._session(write=True) as session:
            return len(session.execute(statement.returning(Rating.id)).all())

    def scores_of(self, rater_id: int) -> dict[str, int]:
        """{item_id: score} of one rater."""
        with self._session() as session:
            rows = session.execute(select(Rating.item_id, Rating.score).where(Rating.rater_id == rater_id))
            return {item_id: score for item_id, score in rows}

    def ratings(self) -> list[dict]:
        """Every rating of the study with its rater, oldest first (the CSV export and the report read this)."""
        with self._session() as session:
            rows = session.execute(
                select(Rating, Rater.alias).join(Rater, Rater.id == Rating.rater_id)
                .where(Rater.study_id == self.study.study_id).order_by(Rating.id)
            )
            return [{"rating_id": r.id, "rater_id": r.rater_id, "rater_alias": alias, "trial_id": r.trial_id,
                     "item_id": r.item_id, "score": r.score, "shown_at": r.shown_at,
                     "viewport_width": r.viewport_width, "viewport_height": r.viewport_height,
                     "device_pixel_ratio": r.device_pixel_ratio, "trial_seconds": r.trial_seconds,
                     "created_at": r.created_at.isoformat()}
                    for r, alias in rows]

    def ratings_per_rater(self) -> dict[int, int]:
        """{rater id: number of ratings} for the raters of this study who rated anything."""
        with self._session() as session:
            rows = session.execute(select(Rating.rater_id, func.count()).join(Rater, Rater.id == Rating.rater_id)
                                   .where(Rater.study_id == self.study.study_id).group_by(Rating.rater_id))
            return {rater_id: int(count) for rater_id, count in rows}

    def count_ratings(self) -> int:
        with self._session() as session:
            return int(session.scalar(select(func.count()).select_from(Rating).join(Rater, Rater.id == Rating.rater_id)
                                      .where(Rater.study_id == self.study.study_id)))


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _sqlite_wal_and_immediate_writes(engine: Engine) -> None:
    """WAL journal (readers never block the writer), a busy timeout, and BEGIN IMMEDIATE for writes.

    pysqlite's own transaction handling is switched off so that SQLAlchemy's ``begin`` event decides
    how each transaction starts (the recipe in SQLAlchemy's SQLite dialect documentation).
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        immediate = connection.get_execution_options().get("medsr_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def sqlite_journal_mode(path: Path) -> str:
    """The journal mode of an SQLite file (``wal`` once the server has opened it)."""
    import sqlite3

    with sqlite3.connect(path) as connection:
        return connection.execute("PRAGMA journal_mode").fetchone()[0]
