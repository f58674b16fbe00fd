"""The organiser's API, behind ``Authorization: Bearer <admin token>``: progress, invitations, the
ratings as CSV and the results."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException
from fastapi.responses import JSONResponse, PlainTextResponse

from medsr import layout
from medsr.mos.context import Context
from medsr.mos.guards import bearer_token
from medsr.mos.schemas import EnrolIn


def require_admin(ctx: Context, authorization: Annotated[str | None, Header()] = None) -> None:
    """401 unless the request carries the admin token (Bearer scheme, compared in constant time)."""
    supplied = bearer_token(authorization) or ""
    if not hmac.compare_digest(supplied.encode(), ctx.admin_token.encode()):
        raise HTTPException(401, "admin token required", headers={"WWW-Authenticate": "Bearer"})


router = APIRouter(prefix="/api/admin", dependencies=[Depends(require_admin)])


@router.get("/progress")
def admin_progress(ctx: Context) -> dict:
    counts, per_rater = ctx.db.ratings_per_rater(), ctx.study.n_ratings_per_rater
    return {
        "title": ctx.study.title,
        "n_trials": len(ctx.study.trials),
        "ratings_per_rater": per_rater,
        "raters": [
            {
                "rater_id": r.public_id,
                "alias": r.alias,
                "link": f"/r/{r.token}",
                "calibrated": r.calibration is not None,
                "ratings": counts.get(r.id, 0),
                "complete": counts.get(r.id, 0) == per_rater,
                "created_at": r.created_at.isoformat(),
            }
            for r in ctx.db.raters()
        ],
    }


@router.post("/raters", status_code=201)
def admin_invite(body: EnrolIn, ctx: Context) -> dict:
    return ctx.new_rater(body.alias)


@router.get("/ratings.csv")
def admin_csv(ctx: Context) -> PlainTextResponse:
    from medsr.mos.report import ratings_csv

    return PlainTextResponse(
        ratings_csv(ctx.study, ctx.db.ratings()),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{layout.MOS_RATINGS}"'},
    )


@router.get("/results")
def admin_results(ctx: Context) -> JSONResponse:
    from medsr.mos.analysis import analyse

    return JSONResponse(analyse(ctx.study, ctx.db.ratings(), n_resamples=1000))
