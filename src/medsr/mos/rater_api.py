"""The rater's API: the study's scale, enrolment, progress, calibration, and one trial at a time.

A rater sees only their own trials and scores; which item is which method never leaves the server.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from medsr.mos.context import Context, RaterDep, item_order
from medsr.mos.db import Viewport
from medsr.mos.schemas import EnrolIn, ScoresIn
from medsr.mos.study import NARROW_SCREEN_PX, SCALE_LABELS

router = APIRouter(prefix="/api")
SCALE = {str(k): v for k, v in SCALE_LABELS.items()}


@router.get("/study")
def study_info(ctx: Context) -> dict:
    return {
        "title": ctx.study.title,
        "n_trials": len(ctx.study.trials),
        "scale": SCALE,
        "enrolment": "invite" if ctx.invite_only else "open",
        "narrow_screen_px": NARROW_SCREEN_PX,
    }


@router.post("/raters", status_code=201)
def enrol(body: EnrolIn, ctx: Context) -> dict:
    if ctx.invite_only:
        raise HTTPException(403, "this study is by invitation: ask the organiser for your link")
    return ctx.new_rater(body.alias, ctx.max_raters)


@router.get("/rater/{token}")
def progress(rater: RaterDep, ctx: Context) -> dict:
    done, study = ctx.trials_done(rater), ctx.study
    return {
        "alias": rater.alias,
        "n_trials": len(study.trials),
        "n_done": len(done),
        "next_position": ctx.first_open(done),
        "calibrated": rater.calibration is not None,
        "scale": SCALE,
        "calibration": {
            "original": f"/images/{study.calibration_original}",
            "items": [{"item_id": c.item_id, "url": f"/images/{c.file}"} for c in study.calibration],
        },
    }


@router.post("/rater/{token}/calibration")
def calibrate(rater: RaterDep, body: ScoresIn, ctx: Context) -> dict:
    expected = {c.item_id: c for c in ctx.study.calibration}
    if set(body.scores) != set(expected):
        raise HTTPException(422, "score every calibration image, and only those")
    stored = ctx.db.save_calibration(rater.id, body.scores)
    return {
        "feedback": [
            {"item_id": i, "your_score": stored[i], "expected": c.expected, "explanation": c.explanation}
            for i, c in expected.items()
        ]
    }


@router.get("/rater/{token}/trials/{position}")
def trial(rater: RaterDep, position: int, ctx: Context) -> dict:
    assignment = ctx.assignment(rater, position)
    ctx.db.mark_shown(
        rater.id, position
    )  # the server's clock times the trial too (report: implausibly fast raters)
    shown = ctx.study.trial_by_id[assignment.trial_id]
    files = {i.item_id: i.file for i in shown.items}
    scores = ctx.db.scores_of(rater.id)
    return {
        "position": position,
        "n_trials": len(ctx.study.trials),
        "original": f"/images/{shown.original}",
        "items": [
            {
                "item_id": item_id,
                "label": chr(ord("A") + k),
                "url": f"/images/{files[item_id]}",
                "score": scores.get(item_id),
            }
            for k, item_id in enumerate(item_order(assignment))
        ],
    }


@router.post("/rater/{token}/trials/{position}")
def rate(rater: RaterDep, position: int, body: ScoresIn, ctx: Context) -> dict:
    if rater.calibration is None:
        raise HTTPException(409, "complete the calibration trial first")
    assignment = ctx.assignment(rater, position)
    if assignment.shown_at is None:
        raise HTTPException(409, "open this trial before scoring it")
    order = item_order(assignment)
    if set(body.scores) != set(order):
        raise HTTPException(422, "score every image of this trial, and only those")
    viewport = Viewport(body.viewport.width, body.viewport.height, body.viewport.device_pixel_ratio)
    rows = [(item_id, body.scores[item_id], k + 1) for k, item_id in enumerate(order)]
    stored = ctx.db.add_ratings(rater.id, assignment.trial_id, rows, viewport, body.trial_seconds)
    return {
        "stored": stored,
        "already_stored": len(rows) - stored,
        "next_position": ctx.first_open(ctx.trials_done(rater)),
    }
