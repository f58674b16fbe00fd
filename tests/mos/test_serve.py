"""``medsr mos serve`` as users start it: a fresh admin token printed at start, one-line errors."""

from __future__ import annotations

import requests

from medsr.cli import main
from mos_support import make_evaluation, make_study, running_server


def test_a_fresh_admin_token_is_printed_and_is_the_only_key(tmp_path):
    study = make_study(make_evaluation(tmp_path), tmp_path / "study", images=2)
    with running_server(study.folder, None, "--invite-only", admin_token=None) as base:
        banner = running_server.banner
        assert banner[0].startswith("study 'Super-resolution reader study': 2 trials") and banner[2].endswith(
            "/admin"
        )
        token = banner[3].removeprefix("admin token: ")
        assert len(token) >= 24 and "from" not in token
        assert requests.get(f"{base}/api/admin/progress", timeout=10).status_code == 401
        invite = requests.post(
            f"{base}/api/admin/raters",
            json={"alias": "r1"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert invite.status_code == 201
        assert requests.post(f"{base}/api/raters", json={"alias": "walk-in"}, timeout=10).status_code == 403
    assert (study.folder / "mos.sqlite").is_file()


def test_bad_study_or_database_is_one_line(tmp_path, capsys, monkeypatch):
    assert main(["mos", "serve", str(tmp_path)]) == 1
    assert (
        capsys.readouterr().err.strip()
        == f"medsr: error: {tmp_path}: not a reader study (no study.json; build one with medsr mos create)"
    )
    study = make_study(make_evaluation(tmp_path / "e"), tmp_path / "study", images=2)
    assert main(["mos", "report", str(study.folder), "--db", "oracle://x@y/z"]) == 1
    assert "oracle is not supported" in capsys.readouterr().err
    assert main(["mos", "serve", str(study.folder), "--max-raters", "0"]) == 1
    assert "--max-raters: must be at least 1, got 0" in capsys.readouterr().err
    monkeypatch.setenv("MEDSR_MOS_ADMIN_TOKEN", "short")
    assert main(["mos", "serve", str(study.folder)]) == 1
    assert "MEDSR_MOS_ADMIN_TOKEN: use at least 16 characters" in capsys.readouterr().err
