"""The ratings store under a careless admin: checkpoints on shutdown and while serving, backups,
damaged files, first-answer calibration under threads, 0600 files, public ids, server-side trial
times, older databases migrated; and ``medsr mos serve --public-url``.

PostgreSQL variants run when ``MEDSR_TEST_POSTGRES_URL`` names a server (they skip otherwise)."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import pytest
from sqlalchemy import (
    CheckConstraint,
    Column,
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
    insert,
)

from medsr.cli import main
from medsr.errors import MedsrError
from medsr.mos.db import Database, Viewport, database_url
from mos_support import (
    make_evaluation,
    make_study,
    postgres_schema,
    rate_over_http,
    rate_positions,
    server_process,
)

VIEW = Viewport(1400, 900, 1.0)


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    return make_evaluation(tmp_path_factory.mktemp("mos-db"))


@pytest.fixture
def study(evaluation, tmp_path):
    return make_study(evaluation, tmp_path / "study", images=2)  # 2 trials, 8 ratings per rater


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A database URL of each kind: an SQLite file in tmp_path, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ratings.sqlite'}"
        return
    with postgres_schema() as url:
        yield url


def _lone_copy_ratings(study, tmp_path, name: str) -> int:
    """How many ratings ``mos.sqlite`` holds when copied alone (without its -wal and -shm)."""
    copy = tmp_path / name
    shutil.copyfile(study.folder / "mos.sqlite", copy)
    with closing(sqlite3.connect(copy)) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return (
            connection.execute("SELECT count(*) FROM mos_rating").fetchone()[0]
            if "mos_rating" in tables
            else -1
        )


def _rate_all(db: Database, study, rater_id: int) -> None:
    for trial in study.trials:
        db.add_ratings(
            rater_id, trial.trial_id, [(i.item_id, 3, k + 1) for k, i in enumerate(trial.items)], VIEW
        )


# -- A1: checkpoints ------------------------------------------------------------------------------
def test_sigterm_and_periodic_checkpoints_leave_every_rating_in_the_file_alone(study, tmp_path):
    with server_process(study.folder, "--checkpoint-seconds", "0.1") as (base, process, _):
        token, first = rate_over_http(base, study, "early", [1])
        time.sleep(0.6)  # a few periodic checkpoints
        assert _lone_copy_ratings(study, tmp_path, "while-serving.sqlite") == first > 0
        second = rate_positions(base, token, [2]) + rate_over_http(base, study, "late", [1, 2])[1]
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert _lone_copy_ratings(study, tmp_path, "after-sigterm.sqlite") == first + second == 16


def test_ctrl_c_checkpoints_and_public_url_is_the_address_printed(study, tmp_path):
    with server_process(study.folder, "--public-url", "https://study.example.org/") as (
        base,
        process,
        banner,
    ):
        assert banner[1].startswith("raters: https://study.example.org/  (open enrolment")
        assert banner[2] == "admin:  https://study.example.org/admin"
        _, stored = rate_over_http(base, study, "reader", [1, 2])
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert _lone_copy_ratings(study, tmp_path, "after-sigint.sqlite") == stored == 8


def test_close_checkpoints_and_checkpoint_empties_the_log(study, tmp_path):
    db = Database(database_url(study, None), study)
    rater = db.add_rater("a", "token-a-" + "x" * 20)
    _rate_all(db, study, rater.id)
    assert db.checkpoint() is True and (study.folder / "mos.sqlite-wal").stat().st_size == 0
    assert _lone_copy_ratings(study, tmp_path, "checkpointed.sqlite") == 8
    db.close()
    db.close()  # idempotent


@pytest.mark.parametrize(
    "bad",
    [
        "ftp://study.example.org",
        "study.example.org",
        "https://",
        "https://x/ y",
        "https://u:p@x.org",
        "https://x.org?a=1",
        "https://x.org:99999",
    ],
)
def test_a_bad_public_url_is_one_line(study, capsys, bad):
    assert main(["mos", "serve", str(study.folder), "--public-url", bad]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("medsr: error: --public-url: expected http(s)://HOST") and "\n" not in err
    assert not (study.folder / "mos.sqlite").exists()  # refused before anything is opened


def test_a_bad_checkpoint_interval_is_one_line(study, capsys):
    assert main(["mos", "serve", str(study.folder), "--checkpoint-seconds", "0"]) == 1
    assert (
        capsys.readouterr().err.strip() == "medsr: error: --checkpoint-seconds: must be more than 0, got 0.0"
    )


# -- A2: backups ----------------------------------------------------------------------------------
def test_sqlite_backup_is_one_consistent_0600_file_while_the_database_is_open(study, tmp_path, capsys):
    db = Database(database_url(study, None), study)  # stays open: ratings sit in the -wal
    try:
        for alias in ("a", "b"):
            _rate_all(db, study, db.add_rater(alias, f"token-{alias}-" + "x" * 20).id)
        out = tmp_path / "backups" / "mos-backup.sqlite"
        assert main(["mos", "backup", str(study.folder), str(out)]) == 0
        assert "2 raters, 16 ratings" in capsys.readouterr().out
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        assert not out.with_name(out.name + "-wal").exists() and [p.name for p in out.parent.iterdir()] == [
            out.name
        ]
        with closing(sqlite3.connect(out)) as copy:
            assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
            assert copy.execute("SELECT count(*) FROM mos_rating").fetchone()[0] == 16
        _rate_all(db, study, db.add_rater("c", "token-c-" + "x" * 20).id)
        assert main(["mos", "backup", str(study.folder), str(out)]) == 0  # an older backup is replaced
        assert "3 raters, 24 ratings" in capsys.readouterr().out
        for live in ("mos.sqlite", "mos.sqlite-wal", "./mos.sqlite"):
            assert main(["mos", "backup", str(study.folder), str(study.folder / live)]) == 1
            err = capsys.readouterr().err.strip()
            assert err.endswith("is the live database; write the backup to another file") and "\n" not in err
        assert db.count_ratings() == 24
    finally:
        db.close()


def test_backup_of_a_study_without_a_database_is_one_line(study, tmp_path, capsys):
    assert main(["mos", "backup", str(study.folder), str(tmp_path / "b.sqlite")]) == 1
    assert (
        capsys.readouterr().err.strip()
        == f"medsr: error: {study.folder / 'mos.sqlite'}: no database yet (nothing to back up)"
    )
    assert not (study.folder / "mos.sqlite").exists() and not (tmp_path / "b.sqlite").exists()


def test_postgresql_backup_is_a_json_export_of_the_study(study, tmp_path, capsys):
    with postgres_schema() as url:
        db = Database(database_url(study, url), study)
        try:
            raters = [db.add_rater(alias, f"token-{alias}-" + "x" * 20) for alias in ("a", "b")]
            for rater in raters:
                _rate_all(db, study, rater.id)
            db.save_calibration(raters[0].id, {"c1": 5})
        finally:
            db.close()
        out = tmp_path / "export.json"
        assert main(["mos", "backup", str(study.folder), str(out), "--db", url]) == 0
        assert "2 raters, 16 ratings" in capsys.readouterr().out
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    document = json.loads(out.read_text())
    assert document["format"] == "medsr-mos-backup" and document["isolation"] == "REPEATABLE READ"
    tables = document["tables"]
    assert [len(tables[t]) for t in ("mos_rater", "mos_assignment", "mos_rating")] == [2, 4, 16]
    assert {r["public_id"] for r in tables["mos_rater"]} == {r.public_id for r in raters}
    assert json.loads(tables["mos_rater"][0]["calibration"]) == {"c1": 5}
    assert {"server_seconds", "score", "created_at"} <= set(tables["mos_rating"][0])


# -- A3: damaged and empty files ------------------------------------------------------------------
def test_damaged_or_empty_database_is_a_one_line_error_for_serve_and_report(study, tmp_path, capsys):
    db = Database(database_url(study, None), study)
    _rate_all(db, study, db.add_rater("a", "token-a-" + "x" * 20).id)
    db.close()
    live = study.folder / "mos.sqlite"
    healthy = live.read_bytes()
    cases = {"truncated": healthy[: len(healthy) // 2], "empty": b""}
    for name, content in cases.items():
        live.write_bytes(content)
        for command in (
            ["mos", "serve", str(study.folder)],
            ["mos", "report", str(study.folder), "--out", str(tmp_path / "r")],
        ):
            assert main(command) == 1, (name, command)
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and err.startswith(f"medsr: error: {live}: "), err
            expected = (
                "empty database file"
                if name == "empty"
                else "damaged database (database disk image is malformed)"
            )
            assert expected in err, err
        assert live.read_bytes() == content  # left as it was, for the organiser
    assert not (tmp_path / "r").exists()


def test_a_zero_byte_file_with_its_log_beside_it_still_opens(study, tmp_path):
    """A 0-byte ``mos.sqlite`` whose ``-wal`` holds the data is recoverable, not "empty"."""
    source = tmp_path / "src.sqlite"
    with closing(sqlite3.connect(source)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA wal_autocheckpoint=0")
        connection.execute("CREATE TABLE t(x)")
        connection.commit()
        shutil.copyfile(source.with_name("src.sqlite-wal"), tmp_path / "zero.sqlite-wal")
    (tmp_path / "zero.sqlite").write_bytes(b"")
    Database(f"sqlite:///{tmp_path / 'zero.sqlite'}", study).close()


# -- A4: calibration ------------------------------------------------------------------------------
def test_the_first_calibration_answer_stands_under_20_parallel_submits(study, db_url):
    db = Database(database_url(study, db_url), study)
    try:
        rater = db.add_rater("a", "token-a-" + "x" * 20)
        answers = [{c.item_id: 1 + (k + j) % 5 for j, c in enumerate(study.calibration)} for k in range(20)]
        barrier = threading.Barrier(20)

        def submit(answer: dict) -> dict:
            barrier.wait(timeout=30)
            return db.save_calibration(rater.id, answer)

        with ThreadPoolExecutor(20) as pool:
            returned = list(pool.map(submit, answers))
        stored = json.loads(db.rater_by_token(rater.token).calibration)
        assert stored in answers and all(r == stored for r in returned)
    finally:
        db.close()


# -- A5: file mode --------------------------------------------------------------------------------
def test_the_sqlite_file_and_its_wal_and_shm_are_0600(study, tmp_path):
    db = Database(database_url(study, None), study)
    try:
        db.add_rater("a", "token-a-" + "x" * 20)
        files = [study.folder / name for name in ("mos.sqlite", "mos.sqlite-wal", "mos.sqlite-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}
    finally:
        db.close()
    (study.folder / "mos.sqlite").chmod(0o644)  # a database made by an older medsr
    Database(database_url(study, None), study).close()
    assert stat.S_IMODE((study.folder / "mos.sqlite").stat().st_mode) == 0o600


# -- B6/B7: public ids, server-side time, migration -------------------------------------------------
def test_raters_have_random_unique_public_ids(study, db_url):
    db = Database(database_url(study, db_url), study)
    try:
        raters = [db.add_rater(f"r{k}", f"token-{k}-" + "x" * 20) for k in range(5)]
        ids = [r.public_id for r in raters]
        assert len(set(ids)) == 5 and all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
        assert [r.public_id for r in db.raters()] == ids
        assert db.rater_by_public_id(ids[2]).alias == "r2" and db.rater_by_public_id("0" * 16) is None
    finally:
        db.close()


def test_server_seconds_run_from_the_first_serving_of_a_trial(study, db_url):
    db = Database(database_url(study, db_url), study)
    try:
        rater = db.add_rater("a", "token-a-" + "x" * 20)
        first, second = db.assignments(rater.id)
        db.mark_shown(rater.id, first.position)
        time.sleep(0.3)
        db.mark_shown(rater.id, first.position)  # a reload keeps the first time
        shown = db.assignment(rater.id, first.position).shown_at
        assert shown is not None and db.assignment(rater.id, second.position).shown_at is None
        trial = study.trial_by_id[first.trial_id]
        db.add_ratings(
            rater.id, trial.trial_id, [(i.item_id, 3, k + 1) for k, i in enumerate(trial.items)], VIEW, 0.1
        )
        other = study.trial_by_id[second.trial_id]  # never marked shown
        db.add_ratings(
            rater.id, other.trial_id, [(i.item_id, 3, k + 1) for k, i in enumerate(other.items)], VIEW
        )
        seconds = {r["trial_id"]: r["server_seconds"] for r in db.ratings()}
        assert 0.3 <= seconds[trial.trial_id] < 30 and seconds[other.trial_id] is None
    finally:
        db.close()


def _old_schema() -> MetaData:
    """The tables as medsr made them before public ids and server-side times."""
    md = MetaData()
    Table(
        "mos_rater",
        md,
        Column("id", Integer, primary_key=True),
        Column("study_id", String(32), nullable=False, index=True),
        Column("token", String(64), nullable=False, unique=True),
        Column("alias", String(64), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("calibration", Text),
    )
    Table(
        "mos_assignment",
        md,
        Column("rater_id", ForeignKey("mos_rater.id", ondelete="CASCADE"), primary_key=True),
        Column("position", Integer, primary_key=True),
        Column("trial_id", String(32), nullable=False),
        Column("item_order", Text, nullable=False),
    )
    Table(
        "mos_rating",
        md,
        Column("id", Integer, primary_key=True),
        Column("rater_id", ForeignKey("mos_rater.id", ondelete="CASCADE"), nullable=False, index=True),
        *(Column(name, String(32), nullable=False) for name in ("trial_id", "item_id")),
        Column("score", SmallInteger, nullable=False),
        Column("shown_at", SmallInteger, nullable=False),
        Column("viewport_width", Integer, nullable=False),
        Column("viewport_height", Integer, nullable=False),
        Column("device_pixel_ratio", Float, nullable=False),
        Column("trial_seconds", Float),
        Column("created_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("rater_id", "item_id", name="uq_mos_rating_rater_item"),
        CheckConstraint("score BETWEEN 1 AND 5", name="ck_mos_rating_score"),
    )
    return md


def test_a_database_made_before_public_ids_is_migrated_on_open(study, db_url):
    import datetime as dt

    old = _old_schema()
    engine = create_engine(database_url(study, db_url))
    now = dt.datetime.now(dt.timezone.utc)
    trial = study.trials[0]
    with engine.begin() as connection:
        old.create_all(connection)
        ids = []
        for k in (1, 2):
            ids.append(
                connection.execute(
                    insert(old.tables["mos_rater"]).values(
                        study_id=study.study_id,
                        token=f"old-token-{k}-" + "x" * 20,
                        alias=f"old{k}",
                        created_at=now,
                    )
                ).inserted_primary_key[0]
            )
            connection.execute(
                insert(old.tables["mos_assignment"]).values(
                    rater_id=ids[-1],
                    position=1,
                    trial_id=trial.trial_id,
                    item_order=json.dumps([i.item_id for i in trial.items]),
                )
            )
        connection.execute(
            insert(old.tables["mos_rating"]).values(
                rater_id=ids[0],
                trial_id=trial.trial_id,
                item_id=trial.items[0].item_id,
                score=4,
                shown_at=1,
                viewport_width=1400,
                viewport_height=900,
                device_pixel_ratio=1.0,
                created_at=now,
            )
        )
    engine.dispose()
    db = Database(database_url(study, db_url), study)
    try:
        raters = db.raters()
        assert [r.alias for r in raters] == ["old1", "old2"] and len({r.public_id for r in raters}) == 2
        assert all(r.public_id and len(r.public_id) == 16 for r in raters)
        assert [(r["score"], r["server_seconds"]) for r in db.ratings()] == [(4, None)]
        db.mark_shown(ids[1], 1)
        assert db.add_ratings(
            ids[1], trial.trial_id, [(i.item_id, 3, k + 1) for k, i in enumerate(trial.items)], VIEW
        ) == len(trial.items)
        assert all(r["server_seconds"] >= 0 for r in db.ratings() if r["rater_id"] == ids[1])
        assert db.add_rater("new", "new-token-" + "x" * 20).public_id not in {r.public_id for r in raters}
    finally:
        db.close()
    again = Database(database_url(study, db_url), study)  # a second open changes nothing
    try:
        assert [r.public_id for r in again.raters()][:2] == [r.public_id for r in raters]
    finally:
        again.close()


def test_a_slow_upload_cannot_hold_off_the_stop_and_its_checkpoint(study, tmp_path):
    import socket

    with server_process(study.folder) as (base, process, _):
        _, stored = rate_over_http(base, study, "before-stop", [1])
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as slow:  # promises 100 bytes, sends 4
            slow.sendall(
                b"POST /api/raters HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"al'
            )
            time.sleep(0.3)
            began = time.monotonic()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
            assert time.monotonic() - began < 15  # the grace time, not forever
    assert _lone_copy_ratings(study, tmp_path, "after-slow.sqlite") == stored > 0


def test_another_studys_database_file_is_refused_naming_it(evaluation, study, tmp_path):
    other = make_study(evaluation, tmp_path / "other")
    db = Database(database_url(other, None), other)
    db.add_rater("a", "token-a-" + "x" * 20)
    db.close()
    shutil.copy(other.folder / "mos.sqlite", study.folder / "mos.sqlite")
    with pytest.raises(MedsrError, match=r"mos.sqlite: holds the ratings of another study"):
        Database(database_url(study, None), study)


def test_a_public_url_with_a_path_is_refused(study, capsys):
    assert main(["mos", "serve", str(study.folder), "--public-url", "https://example.org/study"]) == 1
    assert "root of its host" in capsys.readouterr().err
