"""The reader-study API in-process (FastAPI's TestClient) on SQLite: the rater's path, validation, security."""

from __future__ import annotations

import csv
import io
import json

import pytest
from fastapi.testclient import TestClient

from medsr.mos.app import create_app
from medsr.mos.db import Database, database_url, sqlite_journal_mode
from mos_support import ADMIN_TOKEN, make_evaluation, make_study

VIEW = {"width": 1440, "height": 900, "device_pixel_ratio": 2.0}


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    return make_evaluation(tmp_path_factory.mktemp("mos-eval"))


@pytest.fixture
def study(evaluation, tmp_path):
    return make_study(evaluation, tmp_path / "study")


@pytest.fixture
def db(study):
    database = Database(database_url(study, None), study)
    yield database
    database.close()


@pytest.fixture
def client(study, db):
    with TestClient(create_app(study, db, ADMIN_TOKEN)) as test_client:
        yield test_client


def _enrol(client, alias="reader-1") -> str:
    response = client.post("/api/raters", json={"alias": alias})
    assert response.status_code == 201
    return response.json()["token"]


def _calibrate(client, token, study):
    scores = {c.item_id: c.expected for c in study.calibration}
    return client.post(f"/api/rater/{token}/calibration", json={"scores": scores, "viewport": VIEW})


def test_rater_path_from_enrolment_to_done(client, study, db):
    token = _enrol(client)
    state = client.get(f"/api/rater/{token}").json()
    assert state["calibrated"] is False and state["next_position"] == 1 and state["n_trials"] == 6
    assert (
        client.post(f"/api/rater/{token}/trials/1", json={"scores": {}, "viewport": VIEW}).status_code == 409
    )
    feedback = _calibrate(client, token, study).json()["feedback"]
    assert sorted(f["expected"] for f in feedback) == [1, 5] and all(f["explanation"] for f in feedback)
    seen_trials = []
    for position in range(1, 7):
        trial = client.get(f"/api/rater/{token}/trials/{position}").json()
        ids = [item["item_id"] for item in trial["items"]]
        owner = study.trial_of_item[ids[0]]
        seen_trials.append(owner.trial_id)
        assert set(ids) == {i.item_id for i in owner.items}  # the whole trial, nothing else
        assert [item["label"] for item in trial["items"]] == [chr(65 + k) for k in range(len(ids))]
        assert all("method" not in item and "kind" not in item for item in trial["items"])  # blinded
        answer = client.post(
            f"/api/rater/{token}/trials/{position}",
            json={"scores": {i: 3 for i in ids}, "viewport": VIEW, "trial_seconds": 10.0 + position},
        ).json()
        assert answer["stored"] == len(ids) and answer["already_stored"] == 0
        assert answer["next_position"] == (position + 1 if position < 6 else None)
    assert sorted(seen_trials) == sorted(t.trial_id for t in study.trials)
    assert db.count_ratings() == 24
    rows = db.ratings()
    assert {(r["viewport_width"], r["viewport_height"], r["device_pixel_ratio"]) for r in rows} == {
        (1440, 900, 2.0)
    }
    assert sorted({r["trial_seconds"] for r in rows}) == [11.0, 12.0, 13.0, 14.0, 15.0, 16.0]
    state = client.get(f"/api/rater/{token}").json()
    assert state["n_done"] == 6 and state["next_position"] is None


def test_orders_are_stored_per_rater_and_resume_shows_the_same(client, study, db):
    tokens = [_enrol(client, f"r{k}") for k in range(8)]
    orders = []
    for token in tokens:
        rater = db.rater_by_token(token)
        stored = [(a.trial_id, json.loads(a.item_order)) for a in db.assignments(rater.id)]
        shown = [
            [i["item_id"] for i in client.get(f"/api/rater/{token}/trials/{p}").json()["items"]]
            for p in range(1, 7)
        ]
        assert [order for _, order in stored] == shown  # what was shown is what is stored
        assert shown == [
            [i["item_id"] for i in client.get(f"/api/rater/{token}/trials/{p}").json()["items"]]
            for p in range(1, 7)
        ]
        orders.append(tuple(trial for trial, _ in stored))
    assert len(set(orders)) > 1  # shuffled per rater (8 raters, 720 orders)


def test_double_submit_stores_each_rating_once(client, study, db):
    token = _enrol(client)
    _calibrate(client, token, study)
    ids = [i["item_id"] for i in client.get(f"/api/rater/{token}/trials/1").json()["items"]]
    body = {"scores": {i: 4 for i in ids}, "viewport": VIEW}
    first = client.post(f"/api/rater/{token}/trials/1", json=body).json()
    again = client.post(f"/api/rater/{token}/trials/1", json={**body, "scores": {i: 1 for i in ids}}).json()
    assert first["stored"] == len(ids) and again == {
        "stored": 0,
        "already_stored": len(ids),
        "next_position": 2,
    }
    assert db.count_ratings() == len(ids) and {r["score"] for r in db.ratings()} == {
        4
    }  # the first answer stands
    assert _calibrate(client, token, study).status_code == 200


@pytest.mark.parametrize("score", [0, 6, "3", 2.5, None])
def test_scores_outside_1_to_5_are_refused(client, study, db, score):
    token = _enrol(client)
    _calibrate(client, token, study)
    ids = [i["item_id"] for i in client.get(f"/api/rater/{token}/trials/1").json()["items"]]
    response = client.post(
        f"/api/rater/{token}/trials/1",
        json={"scores": {**{i: 3 for i in ids}, ids[0]: score}, "viewport": VIEW},
    )
    assert response.status_code == 422 and db.count_ratings() == 0


def test_unknown_missing_or_foreign_items_and_bad_ids_are_refused(client, study, db):
    token = _enrol(client)
    _calibrate(client, token, study)
    ids = [i["item_id"] for i in client.get(f"/api/rater/{token}/trials/1").json()["items"]]
    other = [i["item_id"] for i in client.get(f"/api/rater/{token}/trials/2").json()["items"]]
    post = lambda scores, **kw: client.post(
        f"/api/rater/{token}/trials/1", json={"scores": scores, "viewport": VIEW, **kw}
    )
    assert post({i: 3 for i in ids[:-1]}).status_code == 422  # one missing
    assert post({**{i: 3 for i in ids}, other[0]: 3}).status_code == 422  # an item of another trial
    assert post({**{i: 3 for i in ids}, "x' OR 1=1 --": 3}).status_code == 422  # unknown id
    assert post({i: 3 for i in ids}, extra=1).status_code == 422  # unknown field
    assert post({i: 3 for i in ids}, trial_seconds=-1).status_code == 422
    assert (
        client.post(
            f"/api/rater/{token}/trials/1",
            json={"scores": {i: 3 for i in ids}, "viewport": {"width": -5, "height": 9}},
        ).status_code
        == 422
    )
    assert client.get(f"/api/rater/{token}/trials/7").status_code == 404
    assert client.get(f"/api/rater/{token}/trials/0").status_code == 404
    assert client.get("/api/rater/not-a-real-token-but-long-enough").status_code == 404
    assert client.get("/api/rater/short").status_code == 422
    assert client.post("/api/raters", json={"alias": "<script>alert(1)</script>"}).status_code == 422
    assert client.post("/api/raters", json={"alias": ""}).status_code == 422
    assert db.count_ratings() == 0


def test_admin_needs_the_token_and_exports_every_rating(client, study, db):
    token = _enrol(client)
    _calibrate(client, token, study)
    ids = [i["item_id"] for i in client.get(f"/api/rater/{token}/trials/1").json()["items"]]
    client.post(f"/api/rater/{token}/trials/1", json={"scores": {i: 5 for i in ids}, "viewport": VIEW})
    for path in ("/api/admin/progress", "/api/admin/ratings.csv", "/api/admin/results"):
        assert client.get(path).status_code == 401
        assert (
            client.get(path, headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
        )
        assert client.get(path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
    assert client.post("/api/admin/raters", json={"alias": "invited"}).status_code == 401
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    rows = list(csv.DictReader(io.StringIO(client.get("/api/admin/ratings.csv", headers=auth).text)))
    assert len(rows) == len(ids) and {r["score"] for r in rows} == {"5"}
    assert {r["method"] for r in rows if r["kind"] == "method"} <= set(study.methods)
    assert all(r["image_key"].startswith("image-") for r in rows)  # study keys, never patient ids
    progress = client.get("/api/admin/progress", headers=auth).json()
    assert progress["raters"][0]["ratings"] == len(ids) and progress["ratings_per_rater"] == 24


def test_raters_see_only_their_own_scores(client, study):
    first, second = _enrol(client, "a"), _enrol(client, "b")
    for token in (first, second):
        _calibrate(client, token, study)
    trial = client.get(f"/api/rater/{first}/trials/1").json()
    client.post(
        f"/api/rater/{first}/trials/1",
        json={"scores": {i["item_id"]: 2 for i in trial["items"]}, "viewport": VIEW},
    )
    assert all(i["score"] == 2 for i in client.get(f"/api/rater/{first}/trials/1").json()["items"])
    for position in range(1, 7):
        assert all(
            i["score"] is None for i in client.get(f"/api/rater/{second}/trials/{position}").json()["items"]
        )


def test_only_study_images_are_served(client, study):
    name = study.trials[0].original
    response = client.get(f"/images/{name}")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content == (study.images_dir / name).read_bytes()
    for bad in (
        "..%2Fstudy.json",
        "..%2F..%2Fetc%2Fpasswd",
        "%2E%2E%2Fstudy.json",
        "0123456789abcdef.png",
        "study.json",
    ):
        assert client.get(f"/images/{bad}").status_code == 404
    assert client.get("/images/../study.json").status_code == 404
    assert client.get("/static/../study.json").status_code == 404
    assert client.get("/private/provenance.csv").status_code == 404


def test_invite_only_study_refuses_self_enrolment(study, db):
    with TestClient(create_app(study, db, ADMIN_TOKEN, invite_only=True)) as client:
        assert client.post("/api/raters", json={"alias": "walk-in"}).status_code == 403
        invited = client.post(
            "/api/admin/raters", json={"alias": "invited"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert invited.status_code == 201
        assert client.get(invited.json()["link"]).status_code == 200


def test_open_enrolment_closes_at_max_raters_but_invitations_still_work(study, db):
    with TestClient(create_app(study, db, ADMIN_TOKEN, max_raters=2)) as client:
        _enrol(client, "first")
        _enrol(client, "second")
        refused = client.post("/api/raters", json={"alias": "third"})
        assert (
            refused.status_code == 403
            and "enrolment is closed: this study has its 2 raters" in refused.json()["detail"]
        )
        invited = client.post(
            "/api/admin/raters", json={"alias": "invited"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert invited.status_code == 201
    assert [r.alias for r in db.raters()] == ["first", "second", "invited"]


def test_sqlite_database_lives_in_the_study_folder_in_wal_mode(study, db, client):
    _enrol(client)
    assert sqlite_journal_mode(study.folder / "mos.sqlite") == "wal"


def test_pages_and_security_headers(client):
    for path in ("/", "/admin"):
        response = client.get(path)
        assert response.status_code == 200 and "<html" in response.text
        assert response.headers["content-security-policy"].startswith("default-src 'self'")
        assert response.headers["referrer-policy"] == "no-referrer"
    assert client.get("/docs").status_code == 404 and client.get("/openapi.json").status_code == 404
