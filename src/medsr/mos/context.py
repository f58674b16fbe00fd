"""What every route of the reader-study app shares: the study, its database and the settings of
``create_app``, held on ``app.state.study`` and reached through FastAPI dependencies."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi import Path as PathParam

from medsr.mos.db import Assignment, Database, Rater
from medsr.mos.schemas import TOKEN_PATTERN
from medsr.mos.study import Study


@dataclass
class StudyContext:
    """One served study. ``images``: every study image's bytes (served from memory)."""

    study: Study
    db: Database
    admin_token: str
    invite_only: bool = False
    max_raters: int | None = None
    images: dict[str, bytes] = field(default_factory=dict)

    def new_rater(self, alias: str, limit: int | None = None) -> dict:
        """Enrol ``alias`` (403 once the study has ``limit`` raters); returns its public id and link."""
        token = secrets.token_urlsafe(24)
        rater = self.db.add_rater(alias, token, max_raters=limit)
        if rater is None:
            raise HTTPException(
                403, f"enrolment is closed: this study has its {limit} raters; ask the organiser for a link"
            )
        return {"rater_id": rater.public_id, "alias": rater.alias, "token": token, "link": f"/r/{token}"}

    def trials_done(self, rater: Rater) -> set[int]:
        """The positions of the rater's trials whose every item is scored."""
        scores = self.db.scores_of(rater.id)
        return {
            a.position
            for a in self.db.assignments(rater.id)
            if all(i.item_id in scores for i in self.study.trial_by_id[a.trial_id].items)
        }

    def first_open(self, done: set[int]) -> int | None:
        """The first trial position not fully rated, None when all are."""
        return next((p for p in range(1, len(self.study.trials) + 1) if p not in done), None)

    def assignment(self, rater: Rater, position: int) -> Assignment:
        """The rater's trial at ``position`` (404 when there is none; the message echoes nothing)."""
        found = self.db.assignment(rater.id, position) if 1 <= position <= len(self.study.trials) else None
        if found is None:
            raise HTTPException(404, f"no such trial (this study has {len(self.study.trials)})")
        return found


def item_order(assignment: Assignment) -> list[str]:
    """The item ids of a trial in the order this rater sees them."""
    return json.loads(assignment.item_order)


def study_context(request: Request) -> StudyContext:
    return request.app.state.study


def rater_of(token: Annotated[str, PathParam(pattern=TOKEN_PATTERN)], request: Request) -> Rater:
    """The rater of a ``/r/{token}`` or ``/api/rater/{token}`` path (404 for an unknown token)."""
    rater = study_context(request).db.rater_by_token(token)
    if rater is None:
        raise HTTPException(404, "unknown rater link")
    return rater


Context = Annotated[StudyContext, Depends(study_context)]
RaterDep = Annotated[Rater, Depends(rater_of)]
