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

import requests

from medsr.evaluate import EvalOptions, evaluate
from medsr.models import load_model
from medsr.mos.study import StudyOptions, create_study

from conftest import make_ct_dataset

ADMIN_TOKEN = "test-admin-token-0123456789"
METHODS = ("nearest", "bilinear", "bicubic")


def make_evaluation(root: Path) -> Path:
    """``medsr evaluate --save-outputs`` of the three interpolations on 8 real CT test slices (4 patients)."""
    dataset = make_ct_dataset(root, 6, "2,2,8")
    out = root / "eval"
    evaluate(dataset, [load_model(m) for m in METHODS], out, EvalOptions(save_outputs=True, n_figures=0, n_resamples=200))
    return out


def make_study(eval_dir: Path, out: Path, images: int = 6, **kwargs):
    """6 trials x 3 methods + 2 hidden checks = exactly 20 ratings per rater."""
    return create_study(eval_dir, out, StudyOptions(methods=METHODS, n_images=images, **kwargs))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(study_dir: Path, db_url: str | None = None, *extra: str, admin_token: str | None = ADMIN_TOKEN):
    """``medsr mos serve STUDY`` in a subprocess; yields its base URL, stops it afterwards.

    ``admin_token=None`` leaves ``MEDSR_MOS_ADMIN_TOKEN`` unset; ``running_server.banner`` then holds the
    lines the server printed at start.
    """
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
                raise RuntimeError(f"server did not start: {process.stdout.read() if process.poll() is not None else 'timeout'}")
            time.sleep(0.2)
        running_server.banner = [process.stdout.readline().strip() for _ in range(4)]  # printed before serving
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
