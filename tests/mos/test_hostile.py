"""A curious rater and a hostile client against the reader study: blinding in the bytes, short
refusals that echo nothing, no Host-header redirects, strict Authorization."""

from __future__ import annotations

import hashlib
import time
from collections import Counter, defaultdict

import pytest
from fastapi.testclient import TestClient

from medsr.mos.app import create_app
from medsr.mos.db import Database, database_url
from medsr.mos.guards import MAX_BODY
from medsr.mos.study import CHECK_ORIGINAL, METHOD
from mos_support import ADMIN_TOKEN, make_evaluation, make_study

VIEW = {"width": 1600, "height": 1000, "device_pixel_ratio": 1.0}


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    return make_evaluation(tmp_path_factory.mktemp("mos-hostile"))


@pytest.fixture
def study(evaluation, tmp_path):
    return make_study(evaluation, tmp_path / "study", images=7, check_fraction=0.5)


@pytest.fixture
def app_of(study):
    databases = []

    def build(**kwargs):
        db = Database(database_url(study, None), study)
        databases.append(db)
        return create_app(study, db, ADMIN_TOKEN, **kwargs)

    yield build
    for db in databases:
        db.close()


def _rater(client: TestClient, alias: str) -> str:
    token = client.post("/api/raters", json={"alias": alias}).json()["token"]
    return token


def test_nothing_but_the_pixels_tells_methods_or_checks_apart(study, app_of):
    """What a script with a rater's link can observe: per item its response headers and size, its
    URL, its place in the trial. None of it may predict the method or the hidden check."""
    client = TestClient(app_of())
    kind_of = {i.item_id: (i.method if i.kind == METHOD else i.kind) for t in study.trials for i in t.items}
    headers, sizes, places = set(), defaultdict(set), defaultdict(Counter)
    for rater in range(6):
        token = _rater(client, f"curious-{rater}")
        for position in range(1, len(study.trials) + 1):
            trial = client.get(f"/api/rater/{token}/trials/{position}").json()
            for place, item in enumerate(
                trial["items"] + [{"item_id": "original", "url": trial["original"]}]
            ):
                response = client.get(item["url"])
                shown = {k: v for k, v in response.headers.items() if k.lower() != "date"}
                headers.add(tuple(sorted(shown.items())))
                sizes[position].add(len(response.content))
                if item["item_id"] != "original":
                    places[kind_of[item["item_id"]]][place] += 1
    assert (
        len(headers) == 1
    )  # one set of headers for every image: no ETag, no Last-Modified, one length per trial size
    assert not {"etag", "last-modified"} & {k.lower() for k, _ in next(iter(headers))}
    assert all(len(s) == 1 for s in sizes.values())  # within a trial every image has the same encoded size
    for kind, counter in places.items():  # the place in the trial is shuffled per rater and trial
        assert max(counter.values()) / sum(counter.values()) < 0.6, (kind, counter)


def test_the_hidden_original_is_not_the_original_byte_for_byte_and_files_keep_no_order(study):
    digests = {}
    for trial in study.trials:
        original = hashlib.sha256((study.images_dir / trial.original).read_bytes()).hexdigest()
        for item in trial.items:
            digests[item.item_id] = hashlib.sha256((study.images_dir / item.file).read_bytes()).hexdigest()
            if item.kind == CHECK_ORIGINAL:
                assert digests[item.item_id] != original
    assert len({(study.images_dir / name).stat().st_mtime_ns for name in study.image_files}) == 1
    sizes = {(study.images_dir / name).stat().st_size for name in study.image_files}
    assert len(sizes) == 1  # every region of this study is 128 x 128: one size for every file


def test_images_are_served_from_memory(study, app_of):
    client = TestClient(app_of())
    name = study.trials[0].items[0].file
    first = client.get(f"/images/{name}").content
    (study.images_dir / name).unlink()  # nothing on disk is read per request
    assert client.get(f"/images/{name}").content == first


def test_a_huge_body_is_refused_before_it_is_read_or_parsed(app_of):
    client = TestClient(app_of(invite_only=True))
    began = time.perf_counter()
    response = client.post(
        "/api/raters",
        content=b'{"alias": "' + b"x" * (10 * 1024 * 1024) + b'"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413 and time.perf_counter() - began < 2.0  # 413 before the invite-only 403
    assert b"xxxx" not in response.content and len(response.content) < 100

    def chunks():  # no Content-Length: the body arrives in pieces and is cut off at the limit
        for _ in range(64):
            yield b" " * 4096

    assert (
        client.post("/api/raters", content=chunks(), headers={"content-type": "application/json"}).status_code
        == 413
    )
    assert client.get("/healthz").json() == {"ok": True}
    assert MAX_BODY == 64 * 1024


def test_refusals_never_echo_the_input(app_of):
    client = TestClient(app_of())
    response = client.post("/api/raters", json={"alias": "<script>steal()</script>"})
    assert response.status_code == 422 and "steal" not in response.text
    assert response.json() == {"detail": "invalid request", "fields": ["alias"]}
    response = client.post("/api/raters", json={"alias": "ok", "evil": "x" * 1000})
    assert response.status_code == 422 and "xxx" not in response.text


@pytest.mark.parametrize(
    "body",
    [
        b'{"alias": "a", "alias": "b"}',  # duplicate keys: last-wins parsing is refused
        b'{"scores": {}, "viewport": {"width": 1, "height": 1}, "trial_seconds": NaN}',
        b'{"scores": {}, "viewport": {"width": 1, "height": 1}, "trial_seconds": 1e999}',
        b'{"scores": {}, "viewport": {"width": 1, "height": 1, "device_pixel_ratio": -Infinity}}',
        b'{"alias": ',
    ],
)
def test_duplicate_keys_and_non_finite_numbers_are_refused_with_422(app_of, study, body):
    client = TestClient(app_of())
    token = _rater(client, "strict")
    for path in ("/api/raters", f"/api/rater/{token}/calibration", f"/api/rater/{token}/trials/1"):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, (path, response.status_code)
        assert response.json() == {"detail": "invalid JSON (malformed, duplicate keys or non-finite numbers)"}


def test_authorization_needs_the_bearer_scheme_in_any_case(app_of):
    client = TestClient(app_of())
    for header, status in (
        (f"Bearer {ADMIN_TOKEN}", 200),
        (f"bearer {ADMIN_TOKEN}", 200),
        (f"BEARER  {ADMIN_TOKEN}", 200),
        (ADMIN_TOKEN, 401),
        (f"Basic {ADMIN_TOKEN}", 401),
        ("Bearer", 401),
        ("", 401),
    ):
        assert client.get("/api/admin/progress", headers={"Authorization": header}).status_code == status, (
            header
        )


def test_no_redirect_is_built_from_the_host_header(app_of):
    client = TestClient(app_of(), follow_redirects=False)
    for path in ("/admin/", "/api/study/", "/static"):
        response = client.get(path, headers={"Host": "evil.example"})
        assert "evil.example" not in response.headers.get("location", ""), path
    pinned = TestClient(app_of(public_url="https://study.example.org"), follow_redirects=False)
    assert pinned.get("/healthz", headers={"Host": "evil.example"}).status_code == 400
    assert pinned.get("/healthz", headers={"Host": "study.example.org"}).status_code == 200


def test_the_patient_key_is_readable_by_its_owner_only(study):
    private = study.folder / "private"
    assert private.stat().st_mode & 0o777 == 0o700
    assert (private / "provenance.csv").stat().st_mode & 0o777 == 0o600


def test_rater_ids_are_random_and_trials_are_timed_by_the_server(study, app_of):
    client = TestClient(app_of())
    ids = [client.post("/api/raters", json={"alias": f"r{k}"}).json()["rater_id"] for k in range(3)]
    assert all(isinstance(i, str) and len(i) == 16 for i in ids) and len(set(ids)) == 3  # not 1, 2, 3
    progress = client.get("/api/admin/progress", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    assert sorted(r["rater_id"] for r in progress["raters"]) == sorted(ids)
    token = _rater(client, "timed")
    client.post(
        f"/api/rater/{token}/calibration",
        json={"scores": {c.item_id: c.expected for c in study.calibration}, "viewport": VIEW},
    )
    trial = client.get(f"/api/rater/{token}/trials/1").json()
    time.sleep(0.2)
    scores = {item["item_id"]: 3 for item in trial["items"]}
    assert (
        client.post(
            f"/api/rater/{token}/trials/1", json={"scores": scores, "viewport": VIEW, "trial_seconds": 999.0}
        ).status_code
        == 200
    )
    db = Database(database_url(study, None), study)
    try:
        timed = [r["server_seconds"] for r in db.ratings()]
    finally:
        db.close()
    assert timed and all(0.2 <= s < 60 for s in timed)  # the server's clock, not the 999 s the client claimed


def test_prefetching_every_trial_banks_no_time_and_unopened_trials_are_refused(study, app_of):
    from medsr.mos.analysis import analyse

    client = TestClient(app_of())
    token = _rater(client, "prefetcher")
    client.post(
        f"/api/rater/{token}/calibration",
        json={"scores": {c.item_id: c.expected for c in study.calibration}, "viewport": VIEW},
    )
    trials = {p: client.get(f"/api/rater/{token}/trials/{p}").json() for p in range(1, len(study.trials) + 1)}
    time.sleep(1.2)  # one wait, then every trial in a burst
    for position, trial in trials.items():
        scores = {item["item_id"]: 4 for item in trial["items"]}
        assert (
            client.post(
                f"/api/rater/{token}/trials/{position}", json={"scores": scores, "viewport": VIEW}
            ).status_code
            == 200
        )
    other = _rater(client, "blind-poster")  # never opens a trial: the item ids are the same for everyone
    client.post(
        f"/api/rater/{other}/calibration",
        json={"scores": {c.item_id: c.expected for c in study.calibration}, "viewport": VIEW},
    )
    scores = {item["item_id"]: 4 for item in trials[1]["items"]}
    assert (
        client.post(f"/api/rater/{other}/trials/1", json={"scores": scores, "viewport": VIEW}).status_code
        == 409
    )
    db = Database(database_url(study, None), study)
    try:
        rows = db.ratings()
    finally:
        db.close()
    (rater,) = analyse(study, rows, n_resamples=50)["raters"]
    assert rater["median_server_seconds"] < 0.5 and any(
        r.startswith("implausibly fast") for r in rater["reasons"]
    )


def test_validation_errors_name_known_fields_only(study, app_of):
    client = TestClient(app_of())
    token = _rater(client, "echo")
    body = {"scores": {"<script>SECRET</script>": 9}, "viewport": VIEW}
    response = client.post(f"/api/rater/{token}/calibration", json=body)
    assert (
        response.status_code == 422
        and "SECRET" not in response.text
        and response.json()["fields"] == ["scores"]
    )
    response = client.post("/api/raters", json={"alias": "ok", "SECRETFIELD<b>": 1})
    assert "SECRET" not in response.text and response.json()["fields"] == ["body"]
    assert "7777" not in client.get(f"/api/rater/{token}/trials/{'7' * 400}").text


def test_the_pinned_host_never_redirects_and_answers_ipv6_loopback(app_of):
    pinned = TestClient(app_of(public_url="https://www.study.example.org"), follow_redirects=False)
    response = pinned.get("/r/" + "a" * 24, headers={"Host": "study.example.org:8443"})
    assert (
        response.status_code == 400 and "location" not in response.headers
    )  # no www. redirect, no downgrade
    assert pinned.get("/healthz", headers={"Host": "[::1]:8812"}).status_code == 200
    assert pinned.get("/healthz", headers={"Host": "www.study.example.org"}).status_code == 200


def test_a_slow_body_is_cut_off(study):
    import asyncio

    from medsr.mos.guards import BodyLimit

    async def never_called(scope, receive, send):
        raise AssertionError("the app must not see a body that never arrives")

    sent = []

    async def trickle():
        await asyncio.sleep(5)
        return {"type": "http.request", "body": b"{", "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "headers": [(b"content-length", b"100")]}
    asyncio.run(BodyLimit(never_called, seconds=0.2)(scope, trickle, send))
    assert sent[0]["status"] == 408


def test_the_study_key_is_owner_only(study):
    assert (
        study.folder / "study.json"
    ).stat().st_mode & 0o777 == 0o600  # it says which image is which method
    assert study.folder.stat().st_mode & 0o777 == 0o700


def test_refusals_carry_the_security_headers_too(app_of):
    client = TestClient(app_of(public_url="https://study.example.org"))
    for response in (
        client.post(
            "/api/raters", content=b"x" * (MAX_BODY + 1), headers={"content-type": "application/json"}
        ),
        client.get("/healthz", headers={"Host": "evil.example"}),
        client.get("/images/none.png"),
    ):
        assert response.headers["content-security-policy"].startswith("default-src 'self'"), (
            response.status_code
        )
