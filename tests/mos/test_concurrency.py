"""50 raters at once against the real server (``medsr mos serve`` on loopback): 1,200 ratings, none lost;
and 30 simultaneous enrolments against a cap of 10 raters: exactly 10 get in.

Runs on SQLite (the default, WAL mode) and on PostgreSQL when ``MEDSR_TEST_POSTGRES_URL`` names a
server (``.ci/run`` starts one with ``scripts/ci_services.sh``).
"""

from __future__ import annotations

import csv
import io
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from medsr.mos.db import Database, database_url
from mos_support import (
    ADMIN_TOKEN,
    make_evaluation,
    make_study,
    postgres_schema,
    running_server,
)

RATERS = 50


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    return make_evaluation(tmp_path_factory.mktemp("mos-load"))


def _one_rater(base: str, study, barrier: threading.Barrier, index: int) -> int:
    """Enrol, calibrate and rate every trial; each trial is submitted twice (a double click)."""
    http = requests.Session()
    barrier.wait(timeout=60)
    token = http.post(f"{base}/api/raters", json={"alias": f"load-{index}"}, timeout=60).json()["token"]
    viewport = {"width": 1280 + index, "height": 800, "device_pixel_ratio": 1.0}
    calibration = {c.item_id: c.expected for c in study.calibration}
    http.post(
        f"{base}/api/rater/{token}/calibration",
        json={"scores": calibration, "viewport": viewport},
        timeout=60,
    ).raise_for_status()
    stored = 0
    for position in range(1, len(study.trials) + 1):
        items = http.get(f"{base}/api/rater/{token}/trials/{position}", timeout=60).json()["items"]
        body = {
            "scores": {item["item_id"]: 1 + (index + k) % 5 for k, item in enumerate(items)},
            "viewport": viewport,
        }
        for _ in range(2):
            response = http.post(f"{base}/api/rater/{token}/trials/{position}", json=body, timeout=60)
            response.raise_for_status()
            stored += response.json()["stored"]
    return stored


def _load(study, db_url):
    with running_server(study.folder, db_url) as base:
        barrier = threading.Barrier(RATERS)
        with ThreadPoolExecutor(RATERS) as pool:
            stored = list(pool.map(lambda i: _one_rater(base, study, barrier, i), range(RATERS)))
        export = requests.get(
            f"{base}/api/admin/ratings.csv", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
        ).text
    assert stored == [24] * RATERS  # every first submit stored 24, every repeat 0
    rows = list(csv.DictReader(io.StringIO(export)))
    assert len(rows) == RATERS * 24 == 1200
    assert len({(r["rater_id"], r["item_id"]) for r in rows}) == 1200
    db = Database(database_url(study, db_url), study)
    try:
        assert db.count_ratings() == 1200 and len(db.raters()) == RATERS
        by_rater = {}
        for row in db.ratings():
            by_rater.setdefault(row["rater_id"], set()).add(row["viewport_width"])
        assert all(len(widths) == 1 for widths in by_rater.values()) and len(by_rater) == RATERS
    finally:
        db.close()


def _enrolment_rush(study, db_url, cap=10, visitors=30):
    with running_server(study.folder, db_url, "--max-raters", str(cap)) as base:
        barrier = threading.Barrier(visitors)

        def visit(index: int) -> int:
            barrier.wait(timeout=60)
            return requests.post(
                f"{base}/api/raters", json={"alias": f"rush-{index}"}, timeout=60
            ).status_code

        with ThreadPoolExecutor(visitors) as pool:
            codes = list(pool.map(visit, range(visitors)))
    assert sorted(codes) == [201] * cap + [403] * (visitors - cap)
    db = Database(database_url(study, db_url), study)
    try:
        assert len(db.raters()) == cap
    finally:
        db.close()


def test_fifty_concurrent_raters_on_sqlite(evaluation, tmp_path):
    _load(make_study(evaluation, tmp_path / "study"), None)


def test_enrolment_cap_holds_under_a_rush_on_sqlite(evaluation, tmp_path):
    _enrolment_rush(make_study(evaluation, tmp_path / "study"), None)


@pytest.fixture
def postgres_schema_url():
    """A fresh schema on the test server for this test (dropped afterwards); yields its URL."""
    with postgres_schema() as url:
        yield url


def test_fifty_concurrent_raters_on_postgresql(evaluation, tmp_path, postgres_schema_url):
    _load(make_study(evaluation, tmp_path / "study"), postgres_schema_url)


def test_enrolment_cap_holds_under_a_rush_on_postgresql(evaluation, tmp_path, postgres_schema_url):
    _enrolment_rush(make_study(evaluation, tmp_path / "study"), postgres_schema_url)
