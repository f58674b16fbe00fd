"""Reader-study test support: a real evaluation of real CT slices, a study built from it, and the
``medsr mos serve`` command started as a real server process on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from conftest import make_ct_dataset
from medsr.evaluate import EvalOptions, evaluate
from medsr.models import load_model
from medsr.mos.build import StudyOptions, create_study

ADMIN_TOKEN = "test-admin-token-0123456789"
METHODS = ("nearest", "bilinear", "bicubic")


def make_evaluation(root: Path) -> Path:
    """``medsr evaluate --save-outputs`` of the three interpolations on 8 real CT test slices (4 patients)."""
    dataset = make_ct_dataset(root, 6, "2,2,8")
    out = root / "eval"
    evaluate(
        dataset,
        [load_model(m) for m in METHODS],
        out,
        EvalOptions(save_outputs=True, n_figures=0, n_resamples=200),
    )
    return out


def make_study(eval_dir: Path, out: Path, images: int = 6, **kwargs):
    """6 trials x (3 methods + 1 hidden item: 2 checks, 4 repeats) = exactly 24 ratings per rater."""
    return create_study(eval_dir, out, StudyOptions(methods=METHODS, n_images=images, **kwargs))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(
    study_dir: Path, db_url: str | None = None, *extra: str, admin_token: str | None = ADMIN_TOKEN
):
    """``medsr mos serve STUDY`` in a subprocess; yields its base URL, stops it (SIGTERM) afterwards.

    ``admin_token=None`` leaves ``MEDSR_MOS_ADMIN_TOKEN`` unset; ``running_server.banner`` then holds the
    lines the server printed at start.
    """
    with server_process(study_dir, *extra, db_url=db_url, admin_token=admin_token) as (base, process, banner):
        running_server.banner = banner
        try:
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


POSTGRES_URL = os.environ.get("MEDSR_TEST_POSTGRES_URL")


@contextmanager
def server_process(
    study_dir: Path, *extra: str, db_url: str | None = None, admin_token: str | None = ADMIN_TOKEN
):
    """Like :func:`running_server`, but yields ``(base URL, process, banner lines)`` so that a test can stop
    the server itself (``process.send_signal``); a server still running afterwards is killed."""
    port = free_port()
    command = [sys.executable, "-m", "medsr.cli", "mos", "serve", str(study_dir), "--port", str(port), *extra]
    if db_url:
        command += ["--db", db_url]
    env = {key: value for key, value in os.environ.items() if key != "MEDSR_MOS_ADMIN_TOKEN"}
    if admin_token:
        env["MEDSR_MOS_ADMIN_TOKEN"] = admin_token
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"server did not start: {process.stdout.read() if process.poll() is not None else 'timeout'}"
                )
            time.sleep(0.1)
        banner = [process.stdout.readline().strip() for _ in range(4)]
        yield base, process, banner
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=15)


def rate_over_http(base: str, study, alias: str, positions) -> tuple[str, int]:
    """Enrol ``alias``, calibrate, and rate the trials at ``positions`` (every item 3); returns (token, ratings stored)."""
    view = {"width": 1400, "height": 900, "device_pixel_ratio": 1.0}
    token = requests.post(f"{base}/api/raters", json={"alias": alias}, timeout=30).json()["token"]
    calibration = {c.item_id: c.expected for c in study.calibration}
    requests.post(
        f"{base}/api/rater/{token}/calibration", json={"scores": calibration, "viewport": view}, timeout=30
    ).raise_for_status()
    return token, rate_positions(base, token, positions)


def rate_positions(base: str, token: str, positions) -> int:
    """Rate the trials at ``positions`` of the rater with ``token`` (every item 3); returns how many were stored."""
    view = {"width": 1400, "height": 900, "device_pixel_ratio": 1.0}
    stored = 0
    for position in positions:
        items = requests.get(f"{base}/api/rater/{token}/trials/{position}", timeout=30).json()["items"]
        answer = requests.post(
            f"{base}/api/rater/{token}/trials/{position}",
            json={"scores": {i["item_id"]: 3 for i in items}, "viewport": view},
            timeout=30,
        )
        answer.raise_for_status()
        stored += answer.json()["stored"]
    return stored


def missing_service(reason: str) -> None:
    """Skip a test whose service (PostgreSQL, Chromium) is absent here, or fail it where the services
    are required: ``.ci/run`` sets ``MEDSR_REQUIRE_SERVICES=1`` where it can install them, so a CI run
    never turns green by skipping them."""
    if os.environ.get("MEDSR_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}, and MEDSR_REQUIRE_SERVICES=1 says it must be there")
    pytest.skip(reason)


@contextmanager
def postgres_schema():
    """A fresh schema on the ``MEDSR_TEST_POSTGRES_URL`` server (dropped afterwards); yields its URL.
    Without the server the test is skipped (or fails, see ``missing_service``)."""
    if not POSTGRES_URL:
        missing_service("MEDSR_TEST_POSTGRES_URL is not set (.ci/run starts PostgreSQL and sets it)")
    import uuid

    from sqlalchemy import create_engine, text

    schema = f"medsr_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
