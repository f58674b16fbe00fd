"""``medsr mos serve``: the study's web app under uvicorn."""

from __future__ import annotations

import os
import secrets

from medsr.errors import MedsrError

ADMIN_TOKEN_ENV = "MEDSR_MOS_ADMIN_TOKEN"
MIN_TOKEN_LENGTH = 16


def admin_token_from_environment() -> str | None:
    """The organiser's token from ``MEDSR_MOS_ADMIN_TOKEN``, if set (at least 16 characters)."""
    token = os.environ.get(ADMIN_TOKEN_ENV)
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise MedsrError(f"{ADMIN_TOKEN_ENV}: use at least {MIN_TOKEN_LENGTH} characters")
    return token


def serve(study_dir: str, db_url: str | None, host: str, port: int, *, invite_only: bool = False,
          max_raters: int | None = None) -> None:
    """Open the study and its database, print the addresses and the admin token, and serve until Ctrl-C."""
    import uvicorn

    from medsr.mos.app import DEFAULT_MAX_RATERS, create_app
    from medsr.mos.db import Database, database_url
    from medsr.mos.study import load_study

    token = admin_token_from_environment()
    study = load_study(study_dir)
    db = Database(database_url(study, db_url), study)
    shown = f"(from {ADMIN_TOKEN_ENV})" if token else None
    token = token or secrets.token_urlsafe(24)
    limit = DEFAULT_MAX_RATERS if max_raters is None else max_raters
    app = create_app(study, db, token, invite_only=invite_only, max_raters=limit)
    address = f"http://{host}:{port}"
    print(f"study '{study.title}': {len(study.trials)} trials, {study.n_ratings_per_rater} ratings per rater; "
          f"database {db.dialect}", flush=True)
    enrolment = "invitation only: create links on the admin page" if invite_only else f"open enrolment up to {limit} raters"
    print(f"raters: {address}/  ({enrolment})", flush=True)
    print(f"admin:  {address}/admin", flush=True)
    print(f"admin token: {shown or token}", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print("note: serving beyond this machine; put it behind HTTPS (a reverse proxy) so tokens are not sent in clear",
              flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        db.close()
