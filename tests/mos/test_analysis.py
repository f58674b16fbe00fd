"""MOS, bootstrap CIs, agreement and rater flags on a real study with ratings of known structure."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from medsr.cli import main
from medsr.mos.analysis import analyse
from medsr.mos.db import Database, Viewport, database_url
from medsr.mos.study import CHECK_DEGRADED, CHECK_ORIGINAL
from mos_support import make_evaluation, make_study

TRUE_MOS = {"nearest": 2.0, "bilinear": 3.0, "bicubic": 4.0}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("mos-analysis")
    return make_study(make_evaluation(root), root / "study")


def _careful(item, jitter):
    """A careful rater: the true method score +-1 by ``jitter``, original 5, degraded 1."""
    if item.kind == CHECK_ORIGINAL:
        return 5
    if item.kind == CHECK_DEGRADED:
        return 1
    return int(np.clip(TRUE_MOS[item.method] + jitter, 1, 5))


def _ratings(study, raters):
    """rows like Database.ratings() for {rater_id: scorer(item, jitter)}; jitter cycles -1, 0, +1, 0."""
    rows, rating_id = [], 0
    for rater_id, scorer in raters.items():
        ordered = sorted(
            study.item_by_id.items(),
            key=lambda pair: (study.trial_of_item[pair[0]].trial_id, pair[1].kind, pair[1].method or ""),
        )
        for k, (item_id, item) in enumerate(ordered):  # a fixed order: item ids are random per study
            rating_id += 1
            jitter = (-1, 0, 1, 0)[(k + rater_id) % 4]
            rows.append(
                {
                    "rating_id": rating_id,
                    "rater_id": rater_id,
                    "rater_alias": f"r{rater_id}",
                    "trial_id": "",
                    "item_id": item_id,
                    "score": scorer(item, jitter),
                    "shown_at": 1,
                    "viewport_width": 1400 if rater_id != 3 else 800,
                    "viewport_height": 900,
                    "device_pixel_ratio": 1.0,
                    "created_at": "",
                }
            )
    return rows


def test_inverted_and_inattentive_raters_are_flagged_and_excluded(study):
    careful = {rater: _careful for rater in (1, 2, 3, 4, 5)}
    inverted = lambda item, jitter: 6 - _careful(item, jitter)  # the upside-down scale
    inattentive = lambda item, jitter: {CHECK_ORIGINAL: 1, CHECK_DEGRADED: 5}.get(
        item.kind, _careful(item, jitter)
    )
    rows = _ratings(study, {**careful, 6: inverted, 7: inattentive})
    result = analyse(study, rows, n_resamples=500)
    flags = {r["rater_id"]: r for r in result["raters"]}
    assert {r for r, q in flags.items() if q["flagged"]} == {6, 7}
    assert "anti-correlated" in flags[6]["reasons"][-1] and flags[6]["consensus_rho"] < -0.5
    assert (
        flags[7]["checks_failed"] == flags[7]["checks"] == 2 and "attention checks" in flags[7]["reasons"][0]
    )
    assert (
        flags[1]["consensus_rho"] > 0.5
        and flags[3]["narrow_screen_ratings"] == 24
        and not flags[3]["flagged"]
    )

    clean = result["without_flagged"]
    for method, block in clean["methods"].items():
        kept = [
            r["score"]
            for r in rows
            if r["rater_id"] <= 5
            and study.item_by_id[r["item_id"]].kind == "method"
            and study.item_by_id[r["item_id"]].method == method
        ]  # hidden repeats do not enter the MOS
        assert block["mos"] == pytest.approx(np.mean(kept)) and block["n_ratings"] == len(kept) == 5 * 6
        assert block["ci_low"] <= block["mos"] <= block["ci_high"] and block["ci_low"] < block["ci_high"]
        assert abs(block["mos"] - TRUE_MOS[method]) < 0.35
    vs = clean["vs_baseline"]["bicubic"]  # baseline: nearest (first method)
    expected = 100 * (clean["methods"]["bicubic"]["mos"] / clean["methods"]["nearest"]["mos"] - 1)
    assert vs["improvement_pct"] == pytest.approx(expected) and vs["ci_low"] > 50
    everyone = result["all_raters"]
    assert everyone["n_raters"] == 7 and clean["n_raters"] == 5
    alpha_clean, alpha_all = (p["agreement"]["krippendorff_alpha_ordinal"] for p in (clean, everyone))
    assert alpha_clean > 0.4 and alpha_all < alpha_clean - 0.2  # the inverted rater destroys agreement
    assert clean["checks"][CHECK_ORIGINAL]["mean"] == 5 and clean["checks"][CHECK_DEGRADED]["mean"] == 1


def test_identical_raters_agree_perfectly_and_the_bootstrap_is_seeded(study):
    rows = _ratings(study, {1: lambda item, _: _careful(item, 0), 2: lambda item, _: _careful(item, 0)})
    first, again = (
        analyse(study, rows, n_resamples=300, seed=3),
        analyse(study, rows, n_resamples=300, seed=3),
    )
    assert first == again
    assert first["all_raters"]["agreement"]["krippendorff_alpha_ordinal"] == pytest.approx(1.0)
    assert first["all_raters"]["methods"]["bicubic"]["mos"] == 4.0 and first["n_flagged"] == 0


def test_report_command_reads_the_database_and_writes_md_csv_json(study, tmp_path, capsys):
    db = Database(database_url(study, f"sqlite:///{tmp_path / 'r.sqlite'}"), study)
    for alias in ("a", "b", "c"):
        rater = db.add_rater(alias, f"token-{alias}-" + "x" * 20)
        for trial in study.trials:
            db.add_ratings(
                rater.id,
                trial.trial_id,
                [(i.item_id, _careful(i, 0), k + 1) for k, i in enumerate(trial.items)],
                Viewport(1280, 800, 1.0),
            )
    db.close()
    out = tmp_path / "report"
    assert (
        main(
            [
                "mos",
                "report",
                str(study.folder),
                "--db",
                f"sqlite:///{tmp_path / 'r.sqlite'}",
                "--out",
                str(out),
                "--resamples",
                "200",
            ]
        )
        == 0
    )
    assert "3 raters, 72 ratings, 0 flagged" in capsys.readouterr().out
    results = json.loads((out / "report.json").read_text())
    assert {m: v["mos"] for m, v in results["all_raters"]["methods"].items()} == TRUE_MOS
    assert len(list(csv.DictReader(open(out / "ratings.csv")))) == 72
    mos_rows = list(csv.DictReader(open(out / "mos.csv")))
    assert [(r["raters"], r["method"]) for r in mos_rows][:3] == [("all_raters", m) for m in TRUE_MOS]
    text = (out / "report.md").read_text()
    assert "| bicubic | 4.00 |" in text and "+100.0%" in text and "Without flagged raters" in text
    assert "patient" not in (out / "ratings.csv").read_text()


def test_raters_faster_than_a_second_per_trial_on_the_server_clock_are_flagged(study):
    from medsr.mos.analysis import FAST_SERVER_SECONDS
    from medsr.mos.report import markdown, ratings_csv

    rows = _ratings(study, {rater: _careful for rater in (1, 2, 3, 4)})
    pace = {1: 12.0, 2: 0.4, 3: None, 4: 1.5}  # rater 3: never marked shown (old data)
    position = {t.trial_id: k for k, t in enumerate(study.trials)}
    for row in rows:
        row["trial_id"] = study.trial_of_item[row["item_id"]].trial_id
        seconds = pace[row["rater_id"]]
        row["server_seconds"] = None if seconds is None else seconds + 0.01 * (position[row["trial_id"]] % 3)
    result = analyse(study, rows, n_resamples=200)
    raters = {r["rater_id"]: r for r in result["raters"]}
    assert FAST_SERVER_SECONDS == 1.0 and result["rules"]["flag_fast_server_seconds"] == 1.0
    assert {r for r, q in raters.items() if q["flagged"]} == {2} and result["n_flagged"] == 1
    assert raters[2]["reasons"] == [
        f"implausibly fast: median {raters[2]['median_server_seconds']:.2f} s per trial "
        "on the server's clock (under 1 s)"
    ]
    assert 0.4 <= raters[2]["median_server_seconds"] < 0.45 and raters[3]["median_server_seconds"] is None
    assert 12.0 <= raters[1]["median_server_seconds"] < 12.05
    assert result["without_flagged"]["n_raters"] == 3
    text = markdown(result)
    assert "| r2 (#2) |" in text and "implausibly fast" in text and "Median s per trial (server)" in text
    assert (
        "on the server's clock (from the later of the trial's first display and their previous submit, to its submit) is under 1 s"
        in text
    )
    assert "server_seconds" in ratings_csv(study, rows).splitlines()[0]


def test_a_constant_rater_fails_the_checks_and_is_flagged(study):
    rows = _ratings(study, {1: _careful, 2: _careful, 3: lambda item, jitter: 3})
    flags = {r["rater_id"]: r for r in analyse(study, rows, n_resamples=100)["raters"]}
    assert flags[3]["flagged"] and flags[3]["checks_failed"] == flags[3]["checks"] == 2
    assert "gave every image the same score (3)" in flags[3]["reasons"]
    assert not flags[1]["flagged"]


def test_repeats_measure_consistency_and_stay_out_of_the_mos(study):
    twin_score = lambda item, jitter: _careful(item, 0) if item.kind != "repeat" else _careful(item, 0) - 1  # noqa: E731
    rows = _ratings(study, {1: lambda item, jitter: _careful(item, 0), 2: twin_score})
    raters = {r["rater_id"]: r for r in analyse(study, rows, n_resamples=100)["raters"]}
    assert raters[1]["repeat_difference"] == 0 and raters[2]["repeat_difference"] == 1
    mos = analyse(study, rows, n_resamples=100)["all_raters"]["methods"]
    assert {m: v["mos"] for m, v in mos.items()} == TRUE_MOS  # the lowered repeats do not count


def test_metric_agreement_finds_the_metric_built_to_agree_and_the_one_built_to_disagree(study, tmp_path):
    import copy

    from medsr.mos.analysis import metric_agreement
    from medsr.mos.report import markdown

    assert set(study.info["metrics"]) == {t.image_key for t in study.trials}  # recorded by mos create
    assert set(next(iter(study.info["metrics"].values()))) == set(TRUE_MOS)
    synthetic = copy.copy(study)
    synthetic.info = {**study.info, "metrics": copy.deepcopy(study.info["metrics"])}
    rng = np.random.default_rng(1)
    for number, (_, methods) in enumerate(sorted(synthetic.info["metrics"].items())):
        for method, scores in methods.items():
            truth = TRUE_MOS[method] + 0.1 * number  # the readers' order, different per image
            scores["ssim"] = truth  # higher is better and agrees
            scores["hfen"] = truth  # lower is better, so a value that rises with quality disagrees
            scores["gmsd"] = float(rng.random())  # unrelated
    rows = [
        {
            **r,
            "image_key": study.trial_of_item[r["item_id"]].image_key,
            "kind": study.item_by_id[r["item_id"]].kind,
            "method": study.item_by_id[r["item_id"]].method or "",
        }
        for r in _ratings(study, {1: _careful, 2: _careful, 3: _careful})
    ]
    result = metric_agreement(synthetic, rows, n_resamples=300)
    assert result["ssim"]["agreement"] > 0.8 and result["ssim"]["ci_low"] > 0.5
    assert result["hfen"]["agreement"] < -0.8 and result["hfen"]["agreement_ci"][1] < -0.5
    assert result["hfen"]["rho"] == -result["hfen"]["agreement"]
    assert abs(result["gmsd"]["agreement"]) < result["ssim"]["agreement"]
    agreements = [entry["agreement"] for entry in result.values()]
    assert agreements == sorted(agreements, reverse=True) and list(result)[-1] == "hfen"  # best first
    assert result["psnr"]["agreement"] > 0  # the real PSNR of the interpolations ranks them as readers do
    text = markdown(
        {**analyse(study, _ratings(study, {1: _careful, 2: _careful})), "metric_agreement": result}
    )
    assert "## Which automatic metric agrees with the readers" in text and "| ssim |" in text
