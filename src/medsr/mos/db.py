"""Where ratings live: SQLAlchemy tables on SQLite (default, WAL mode) or PostgreSQL (by URL).

Every statement is built by SQLAlchemy with bound parameters. A rating is unique per (rater, item):
a double submit inserts nothing the second time (``ON CONFLICT DO NOTHING`` on both databases), so
counts stay exact under concurrent submissions. On SQLite, writes start with ``BEGIN IMMEDIATE`` and
wait on a busy timeout instead of failing with "database is locked".

Durability on SQLite: the file (it holds every rater's token) is mode 0600, and so are its ``-wal``
and ``-shm``; an existing file is checked (``PRAGMA quick_check``) before use, so a damaged or empty
one is a one-line error; :meth:`Database.checkpoint` copies the write-ahead log into the file (the
server calls it periodically and :meth:`Database.close` on shutdown), so ``mos.sqlite`` alone holds
the ratings. :func:`backup` makes a consistent single-file copy while the server runs.

Older study databases are migrated on open: missing nullable columns are added and new raters'
``public_id`` is filled in (see :func:`_migrate`).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import random
import secrets
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (
    CheckConstraint,
    Connection,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from medsr import layout
from medsr.errors import MedsrError
from medsr.mos.study import Study

SQLITE_NAME = layout.MOS_DATABASE
SQLITE_FILE_MODE = 0o600  # the file holds every rater's token
CHECKPOINT_MODES = ("PASSIVE", "FULL", "RESTART", "TRUNCATE")
BACKUP_FORMAT = "medsr-mos-backup"
_ENROLMENT_LOCK = 0x6D65_6473_725F_6D6F  # PostgreSQL advisory lock key of enrolments ("medsr_mo")
_MIGRATION_LOCK = _ENROLMENT_LOCK + 1
log = logging.getLogger(__name__)


def new_public_id() -> str:
    """A rater's public id: 16 random hex digits (tells nothing about how many raters there are)."""
    return secrets.token_hex(8)


class Base(DeclarativeBase):
    pass


class Rater(Base):
    __tablename__ = "mos_rater"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # internal: sequential, never shown to raters
    study_id: Mapped[str] = mapped_column(String(32), index=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    # what the API shows instead of ``id``; nullable only so that older databases can gain the column
    public_id: Mapped[str] = mapped_column(
        String(32), unique=True, index=True, nullable=True, default=new_public_id
    )
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
    shown_at: Mapped[_dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )  # first served


class Rating(Base):
    __tablename__ = "mos_rating"
    __table_args__ = (
        UniqueConstraint("rater_id", "item_id", name="uq_mos_rating_rater_item"),
        CheckConstraint("score BETWEEN 1 AND 5", name="ck_mos_rating_score"),
    )
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
    # server clock: from the trial's first GET (Assignment.shown_at) to this insert; None if never marked shown
    server_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)


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
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Database:
    """The ratings store of one study; thread-safe (one session per call).

    On SQLite an existing file is checked first (empty or damaged: :class:`MedsrError` naming the file),
    a missing one is created with mode 0600; older schemas are migrated (:func:`_migrate`).
    """

    def __init__(self, url: str, study: Study) -> None:
        self.study = study
        self._closed = False
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise MedsrError(f"--db: not a database URL: {url!r}") from None
        self.dialect = parsed.get_backend_name()
        self.sqlite_path: Path | None = None
        if self.dialect == "sqlite":
            self.sqlite_path = sqlite_file(parsed)
            if self.sqlite_path is not None:
                prepare_sqlite_file(self.sqlite_path)
            self.engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})
            _sqlite_wal_and_immediate_writes(self.engine, self.sqlite_path)
        elif self.dialect == "postgresql":
            self.engine = create_engine(url, pool_size=10, max_overflow=40, pool_pre_ping=True)
        else:
            raise MedsrError(f"--db: {self.dialect} is not supported (use SQLite or PostgreSQL)")
        self.writer = self.engine.execution_options(medsr_write=True)
        try:
            Base.metadata.create_all(self.engine)
            with self.writer.begin() as connection:
                _migrate(connection)
                others = connection.execute(
                    select(Rater.study_id).where(Rater.study_id != study.study_id).limit(1)
                ).scalar()
            self.checkpoint("PASSIVE")  # the schema belongs in the file itself, not only in its -wal
        except DatabaseError as exc:
            self.engine.dispose()
            raise MedsrError(self._open_error(parsed, database_error_reason(exc))) from None
        except MedsrError as exc:
            self.engine.dispose()
            raise MedsrError(self._open_error(parsed, str(exc))) from None
        if (
            others is not None and self.dialect == "sqlite"
        ):  # one SQLite file per study; PostgreSQL may hold several
            self.engine.dispose()
            raise MedsrError(
                self._open_error(
                    parsed, f"holds the ratings of another study ({others}), not of {study.folder}"
                )
            )

    def _open_error(self, parsed: URL, reason: str) -> str:
        """The one-line error of a database that cannot be opened: it names the SQLite file, or the URL
        (password hidden)."""
        if self.sqlite_path is not None:
            return f"{self.sqlite_path}: {reason}"
        return f"--db: cannot open {parsed.render_as_string(hide_password=True)} ({reason})"

    def checkpoint(self, mode: str = "TRUNCATE") -> bool:
        """Copy SQLite's write-ahead log into the database file (``PRAGMA wal_checkpoint(MODE)``).

        ``TRUNCATE`` (the default, used by :meth:`close`) waits for writers and readers and empties
        the ``-wal``; ``PASSIVE`` (what the server runs periodically) never waits. Returns whether
        every logged frame is now in the file. A no-op returning True on PostgreSQL."""
        if mode not in CHECKPOINT_MODES:
            raise ValueError(f"checkpoint mode must be one of {CHECKPOINT_MODES}, got {mode!r}")
        if self.dialect != "sqlite":
            return True
        raw = self.engine.raw_connection()
        try:
            busy, logged, copied = raw.driver_connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        finally:
            raw.close()
        return busy == 0 and logged == copied

    def close(self) -> None:
        """Checkpoint the log into the file (SQLite, ``TRUNCATE``) and close every connection; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self.checkpoint("TRUNCATE"):
                log.warning("mos: the final checkpoint was incomplete (another process holds the database)")
        except (DatabaseError, sqlite3.Error) as exc:
            log.warning("mos: final checkpoint failed: %s", exc)
        finally:
            self.engine.dispose()

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Session]:
        with Session(self.writer if write else self.engine, expire_on_commit=False) as session:
            with session.begin():
                yield session

    # -- raters ---------------------------------------------------------------------------------
    def add_rater(self, alias: str, token: str, *, max_raters: int | None = None) -> Rater | None:
        """A new rater (with a random ``public_id``) with a freshly shuffled trial order and, per
        trial, item order (both stored).

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
                present = session.scalar(
                    select(func.count()).select_from(Rater).where(Rater.study_id == self.study.study_id)
                )
                if present >= max_raters:
                    return None
            rater = Rater(
                study_id=self.study.study_id,
                token=token,
                alias=alias,
                created_at=_now(),
                public_id=new_public_id(),
            )
            session.add(rater)
            session.flush()
            for position, trial in enumerate(trials, start=1):
                order = [item.item_id for item in trial.items]
                rng.shuffle(order)
                session.add(
                    Assignment(
                        rater_id=rater.id,
                        position=position,
                        trial_id=trial.trial_id,
                        item_order=json.dumps(order),
                    )
                )
        return rater

    def rater_by_token(self, token: str) -> Rater | None:
        with self._session() as session:
            return session.scalar(
                select(Rater).where(Rater.token == token, Rater.study_id == self.study.study_id)
            )

    def rater_by_public_id(self, public_id: str) -> Rater | None:
        with self._session() as session:
            return session.scalar(
                select(Rater).where(Rater.public_id == public_id, Rater.study_id == self.study.study_id)
            )

    def raters(self) -> list[Rater]:
        with self._session() as session:
            return list(
                session.scalars(select(Rater).where(Rater.study_id == self.study.study_id).order_by(Rater.id))
            )

    def assignment(self, rater_id: int, position: int) -> Assignment | None:
        with self._session() as session:
            return session.get(Assignment, (rater_id, position))

    def assignments(self, rater_id: int) -> list[Assignment]:
        with self._session() as session:
            return list(
                session.scalars(
                    select(Assignment).where(Assignment.rater_id == rater_id).order_by(Assignment.position)
                )
            )

    def mark_shown(self, rater_id: int, position: int) -> None:
        """Record (server clock) when the trial at ``position`` was first served to the rater; later calls keep it."""
        statement = (
            update(Assignment)
            .where(
                Assignment.rater_id == rater_id,
                Assignment.position == position,
                Assignment.shown_at.is_(None),
            )
            .values(shown_at=_now())
            .execution_options(synchronize_session=False)
        )
        with self._session(write=True) as session:
            session.execute(statement)

    def save_calibration(self, rater_id: int, scores: dict[str, int]) -> dict[str, int]:
        """Store the calibration answers once; returns the stored ones (the first answer stands).

        One conditional ``UPDATE ... WHERE calibration IS NULL``: on PostgreSQL a concurrent second
        update waits for the first's row lock, then finds the column set and changes nothing."""
        statement = (
            update(Rater)
            .where(Rater.id == rater_id, Rater.calibration.is_(None))
            .values(calibration=json.dumps(scores, sort_keys=True))
            .execution_options(synchronize_session=False)
        )
        with self._session(write=True) as session:
            session.execute(statement)
            stored = session.scalar(select(Rater.calibration).where(Rater.id == rater_id))
        return json.loads(stored)

    # -- ratings --------------------------------------------------------------------------------
    def add_ratings(
        self,
        rater_id: int,
        trial_id: str,
        scores: Sequence[tuple[str, int, int]],
        viewport: Viewport,
        trial_seconds: float | None = None,
    ) -> int:
        """Insert (item_id, score, shown_at) ratings of one trial; returns how many were new.

        Each row also gets ``server_seconds``: now minus the later of the trial's :meth:`mark_shown` time
        and the rater's previous submit (so fetching every trial first and submitting them in a burst does
        not bank time), None if the trial was never marked shown."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        now = _now()
        with self._session(write=True) as session:
            shown = session.scalar(
                select(Assignment.shown_at).where(
                    Assignment.rater_id == rater_id, Assignment.trial_id == trial_id
                )
            )
            previous = session.scalar(select(func.max(Rating.created_at)).where(Rating.rater_id == rater_id))
            start = (
                None
                if shown is None
                else max(_as_utc(shown), _as_utc(previous))
                if previous is not None
                else _as_utc(shown)
            )
            server_seconds = None if start is None else max(0.0, (now - start).total_seconds())
            rows = [
                dict(
                    rater_id=rater_id,
                    trial_id=trial_id,
                    item_id=item_id,
                    score=score,
                    shown_at=shown_at,
                    viewport_width=viewport.width,
                    viewport_height=viewport.height,
                    device_pixel_ratio=viewport.device_pixel_ratio,
                    trial_seconds=trial_seconds,
                    created_at=now,
                    server_seconds=server_seconds,
                )
                for item_id, score, shown_at in scores
            ]
            statement = (
                insert(Rating).values(rows).on_conflict_do_nothing(index_elements=["rater_id", "item_id"])
            )
            return len(session.execute(statement.returning(Rating.id)).all())

    def scores_of(self, rater_id: int) -> dict[str, int]:
        """{item_id: score} of one rater."""
        with self._session() as session:
            rows = session.execute(select(Rating.item_id, Rating.score).where(Rating.rater_id == rater_id))
            return {item_id: score for item_id, score in rows}

    def ratings(self) -> list[dict]:
        """Every rating of the study with its rater, oldest first (the CSV export and the report read this).

        Raises:
            MedsrError: a row the database holds but cannot be read back (damage an integrity check misses)."""
        try:
            return self._ratings()
        except (ValueError, TypeError) as exc:
            raise MedsrError(
                f"{self.sqlite_path or 'the database'}: a rating cannot be read back ({exc})"
            ) from None

    def _ratings(self) -> list[dict]:
        with self._session() as session:
            rows = session.execute(
                select(Rating, Rater.alias)
                .join(Rater, Rater.id == Rating.rater_id)
                .where(Rater.study_id == self.study.study_id)
                .order_by(Rating.id)
            )
            return [
                {
                    "rating_id": r.id,
                    "rater_id": r.rater_id,
                    "rater_alias": alias,
                    "trial_id": r.trial_id,
                    "item_id": r.item_id,
                    "score": r.score,
                    "shown_at": r.shown_at,
                    "viewport_width": r.viewport_width,
                    "viewport_height": r.viewport_height,
                    "device_pixel_ratio": r.device_pixel_ratio,
                    "trial_seconds": r.trial_seconds,
                    "server_seconds": r.server_seconds,
                    "created_at": r.created_at.isoformat(),
                }
                for r, alias in rows
            ]

    def ratings_per_rater(self) -> dict[int, int]:
        """{rater id: number of ratings} for the raters of this study who rated anything."""
        with self._session() as session:
            rows = session.execute(
                select(Rating.rater_id, func.count())
                .join(Rater, Rater.id == Rating.rater_id)
                .where(Rater.study_id == self.study.study_id)
                .group_by(Rating.rater_id)
            )
            return {rater_id: int(count) for rater_id, count in rows}

    def count_ratings(self) -> int:
        with self._session() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(Rating)
                    .join(Rater, Rater.id == Rating.rater_id)
                    .where(Rater.study_id == self.study.study_id)
                )
            )


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _as_utc(moment: _dt.datetime) -> _dt.datetime:
    """SQLite gives back naive datetimes; they were stored in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=_dt.timezone.utc)


# -- schema migration ---------------------------------------------------------------------------
def _migrate(connection: Connection) -> None:
    """Bring a database made by an older medsr up to the current schema, in the caller's write transaction.

    Adds every nullable column the models have and the table lacks (``ALTER TABLE ... ADD COLUMN``;
    ``mos_rater.public_id``, ``mos_assignment.shown_at``, ``mos_rating.server_seconds`` so far), gives
    each rater without one a random ``public_id``, and creates the unique index on it."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    inspector = inspect(connection)
    for table in Base.metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise MedsrError(
                    f"{table.name}: this database is too old to migrate (no column {column.name}); "
                    "rebuild the study"
                )
            kind = column.type.compile(dialect=connection.dialect)
            connection.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
    missing = list(connection.scalars(select(Rater.id).where(Rater.public_id.is_(None))))
    for rater_id in missing:
        connection.execute(update(Rater).where(Rater.id == rater_id).values(public_id=new_public_id()))
    connection.exec_driver_sql(
        "CREATE UNIQUE INDEX IF NOT EXISTS ix_mos_rater_public_id ON mos_rater (public_id)"
    )


# -- SQLite files -------------------------------------------------------------------------------
def sqlite_file(parsed: URL) -> Path | None:
    """The file of an SQLite URL, None for an in-memory database."""
    name = parsed.database
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name).absolute()


def _companions(path: Path) -> list[Path]:
    """The database file and SQLite's ``-wal`` and ``-shm`` beside it."""
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def restrict_mode(path: Path) -> None:
    """chmod 0600 the database file and its ``-wal``/``-shm`` (those present; files of others are left)."""
    for file in _companions(path):
        try:
            if file.exists() and (file.stat().st_mode & 0o777) != SQLITE_FILE_MODE:
                file.chmod(SQLITE_FILE_MODE)
        except OSError:
            pass


def prepare_sqlite_file(path: Path) -> None:
    """Refuse an empty or damaged existing file (one-line :class:`MedsrError`); create a missing one 0600."""
    if path.exists():
        check_sqlite_file(path)
        return
    if not path.parent.is_dir():
        raise MedsrError(f"{path}: its folder does not exist")
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, SQLITE_FILE_MODE))
    except FileExistsError:  # another process made it just now
        check_sqlite_file(path)


def check_sqlite_file(path: Path) -> None:
    """A one-line :class:`MedsrError` naming ``path`` and the reason unless it is a sound SQLite database.

    A 0-byte file is "empty" unless a non-empty ``-wal`` beside it holds the data; otherwise
    ``PRAGMA quick_check`` must answer ``ok``."""
    if path.is_dir():
        raise MedsrError(f"{path}: is a folder, not a database file")
    wal = _companions(path)[1]
    if path.stat().st_size == 0 and not (wal.exists() and wal.stat().st_size > 0):
        raise MedsrError(
            f"{path}: empty database file (0 bytes); restore it from a backup, or delete it to start afresh"
        )
    try:
        with closing(_open_existing(path)) as connection:
            answer = [row[0] for row in connection.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.OperationalError as exc:
        raise MedsrError(f"{path}: cannot read the database ({exc})") from None
    except sqlite3.DatabaseError as exc:
        raise MedsrError(f"{path}: damaged database ({exc}); restore it from a backup") from None
    if answer != ["ok"]:
        more = f" (+{len(answer) - 1} more problems)" if len(answer) > 1 else ""
        raise MedsrError(
            f"{path}: damaged database (quick_check: {answer[0]}{more}); restore it from a backup"
        )


def _open_existing(path: Path) -> sqlite3.Connection:
    """An sqlite3 connection to an existing file (never creates one), autocommit, 60 s busy timeout."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=60, isolation_level=None)


def database_error_reason(exc: Exception) -> str:
    """The first line of a database error's own message (SQLAlchemy wraps the driver's)."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


def _sqlite_wal_and_immediate_writes(engine: Engine, path: Path | None = None) -> None:
    """WAL journal (readers never block the writer), a busy timeout, BEGIN IMMEDIATE for writes, and
    (with ``path``) mode 0600 on the file and its ``-wal``/``-shm``.

    pysqlite's own transaction handling is switched off so that SQLAlchemy's ``begin`` event decides
    how each transaction starts (the recipe in SQLAlchemy's SQLite dialect documentation).
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        if path is not None:
            restrict_mode(path)  # before WAL mode: SQLite gives the -wal and -shm the file's mode
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()
        if path is not None:
            restrict_mode(path)

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        immediate = connection.get_execution_options().get("medsr_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def sqlite_journal_mode(path: Path) -> str:
    """The journal mode of an SQLite file (``wal`` once the server has opened it)."""
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute("PRAGMA journal_mode").fetchone()[0]


# -- backup -------------------------------------------------------------------------------------
def backup(study: Study, db_url: str | None, out: str | Path) -> str:
    """A consistent copy of the study's ratings at ``out``, written to a temporary file and renamed;
    returns a one-line summary.

    SQLite: the online backup API, a single self-contained ``.sqlite`` file (rollback journal mode),
    safe while the server runs. PostgreSQL: a JSON file (:data:`BACKUP_FORMAT`) with every row of this
    study from each table, read in one ``REPEATABLE READ`` read-only transaction. Both are mode 0600
    (they hold the raters' tokens). The live database itself is never overwritten."""
    url = database_url(study, db_url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise MedsrError(f"--db: not a database URL: {db_url!r}") from None
    out = Path(out).absolute()
    if out.is_dir():
        raise MedsrError(f"{out}: is a folder; name the backup file")
    dialect = parsed.get_backend_name()
    if dialect == "sqlite":
        source = sqlite_file(parsed)
        if source is None:
            raise MedsrError("--db: an in-memory SQLite database cannot be backed up")
        return _backup_sqlite(source, out)
    if dialect == "postgresql":
        return _export_postgresql(study, url, parsed, out)
    raise MedsrError(f"--db: {dialect} is not supported (use SQLite or PostgreSQL)")


def _refuse_live(source: Path, out: Path) -> None:
    """MedsrError when ``out`` is the live database or one of its companion files."""
    for live in _companions(source):
        same = out.resolve() == live.resolve()
        if not same and out.exists() and live.exists():
            same = os.path.samefile(out, live)
        if same:
            raise MedsrError(f"{out}: is the live database; write the backup to another file")


def _backup_sqlite(source: Path, out: Path) -> str:
    if not source.exists():
        raise MedsrError(f"{source}: no database yet (nothing to back up)")
    _refuse_live(source, out)
    check_sqlite_file(source)
    try:
        with _temporary_beside(out) as tmp:
            with (
                closing(_open_existing(source)) as src,
                closing(sqlite3.connect(tmp, isolation_level=None)) as dst,
            ):
                src.backup(dst)  # all pages in one step: one snapshot, writers on the source go on (WAL)
                dst.execute("PRAGMA journal_mode=DELETE")  # a single file: no -wal beside the copy
                answer = dst.execute("PRAGMA quick_check").fetchone()[0]
                if answer != "ok":
                    raise MedsrError(f"{out}: the copy failed its check ({answer})")
                counts = _counts(dst)
    except sqlite3.Error as exc:
        raise MedsrError(f"{out}: backup of {source} failed ({exc})") from None
    return f"backup {out}: SQLite copy of {source}, {counts}"


def _counts(connection: sqlite3.Connection) -> str:
    """``N raters, M ratings`` of an sqlite3 connection (all studies in the file)."""
    try:
        raters = connection.execute("SELECT count(*) FROM mos_rater").fetchone()[0]
        ratings = connection.execute("SELECT count(*) FROM mos_rating").fetchone()[0]
    except sqlite3.OperationalError:
        return "no ratings tables"
    return f"{raters} raters, {ratings} ratings"


def _export_postgresql(study: Study, url: str, parsed: URL, out: Path) -> str:
    """Every row of this study from each table, one REPEATABLE READ read-only transaction, as JSON."""
    shown = parsed.render_as_string(hide_password=True)
    engine = create_engine(url)
    try:
        with engine.connect().execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        ) as connection:
            with connection.begin():
                tables = _study_rows(connection, study)
    except DatabaseError as exc:
        raise MedsrError(f"--db: cannot read {shown} ({database_error_reason(exc)})") from None
    finally:
        engine.dispose()
    if tables is None:
        raise MedsrError(f"--db: {shown} has no reader-study tables (nothing to back up)")
    document = {
        "format": BACKUP_FORMAT,
        "version": 1,
        "database": "postgresql",
        "isolation": "REPEATABLE READ",
        "study_id": study.study_id,
        "exported_at": _now().isoformat(),
        "tables": tables,
    }
    with _temporary_beside(out) as tmp:
        tmp.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return (
        f"backup {out}: JSON export of study {study.study_id}, {len(tables.get('mos_rater', []))} raters, "
        f"{len(tables.get('mos_rating', []))} ratings"
    )


def _study_rows(connection: Connection, study: Study) -> dict[str, list[dict]] | None:
    """{table: rows of this study, primary-key order} for every medsr table present (their columns as
    found: an older schema is exported as it is); None when there are none."""
    present = set(inspect(connection).get_table_names())
    if "mos_rater" not in present:
        return None
    metadata = MetaData()
    rater = Table("mos_rater", metadata, autoload_with=connection)
    mine = select(rater.c.id).where(rater.c.study_id == study.study_id)
    tables: dict[str, list[dict]] = {}
    for name in (t.name for t in Base.metadata.sorted_tables if t.name in present):
        table = rater if name == "mos_rater" else Table(name, metadata, autoload_with=connection)
        where = (table.c.study_id == study.study_id) if name == "mos_rater" else table.c.rater_id.in_(mine)
        rows = connection.execute(select(table).where(where).order_by(*table.primary_key.columns)).mappings()
        tables[name] = [{key: _jsonable(value) for key, value in row.items()} for row in rows]
    return tables


def _jsonable(value: object) -> object:
    return value.isoformat() if isinstance(value, (_dt.datetime, _dt.date)) else value


@contextmanager
def _temporary_beside(out: Path) -> Iterator[Path]:
    """A new empty 0600 file next to ``out``; renamed onto ``out`` (after fsync) if the block succeeds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
