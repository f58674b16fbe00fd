"""The reader-study web app (FastAPI): rater pages and API, admin pages and exports, images.

Routes (``T`` is a rater's secret token, the key of their resume link ``/r/T``):

* ``GET /`` instructions and enrolment; ``POST /api/raters`` enrols (unless invite-only or the study has its ``max_raters``);
* ``GET /r/T`` the rater's page; ``GET /api/rater/T`` their progress; ``POST /api/rater/T/calibration``;
  ``GET|POST /api/rater/T/trials/{position}`` one trial (original + unlabelled items, their stored order);
* ``GET /images/{name}`` a study image (names are checked against the study: nothing else is served);
* ``GET /admin`` the organiser's page; ``/api/admin/...`` progress, invitations, ratings.csv and results,
  all behind ``Authorization: Bearer <admin token>``.

A rater sees only their own trials and scores; which item is which method never leaves the server,
and nothing else they can observe tells it: images are served from memory with the same headers
(no ETag, no Last-Modified) and, within a trial, the same size (``medsr.mos.study``).

Hostile requests get short refusals that echo nothing: bodies are capped at ``MAX_BODY`` bytes
before anything parses them (413), JSON with duplicate keys or non-finite numbers is refused (422),
validation errors name the field, never the value; ``Authorization`` must use the ``Bearer`` scheme
(any case); no redirect is built from the request's Host header, and with ``public_url`` only that
host (and loopback) is served.
"""


import asyncio
import hmac
import json
import secrets
from pathlib import Path
from typing import Annotated

import math
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Header, HTTPException, Path as PathParam, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from pydantic import BaseModel, ConfigDict, Field

from medsr.mos.db import Database, Rater, Viewport
from medsr.mos.study import IMAGE_NAME, NARROW_SCREEN_PX, SCALE_LABELS, Study

STATIC = Path(__file__).parent / "static"
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{20,64}$"
ALIAS_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}$"
DEFAULT_MAX_RATERS = 200  # open enrolment closes here: bounds what an anonymous visitor can add
MAX_BODY = 64 * 1024  # bytes; the largest legitimate body (a trial's scores) is under 2 KB
BODY_SECONDS = 10.0  # a body must arrive within this (408 beyond): a slow upload cannot hold the server
IMAGE_HEADERS = {"Cache-Control": "private, max-age=3600"}  # the same for every image: no ETag, no Last-Modified


class BodyLimit:
    """ASGI middleware: read at most ``limit`` bytes of a request body, within ``seconds``, before the
    app sees it (413 beyond, whatever Content-Length says; 408 when too slow), and refuse JSON with duplicate keys or non-finite numbers
    (422). Nothing of the body is echoed."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY, seconds: float = BODY_SECONDS) -> None:
        self.app, self.limit, self.seconds = app, limit, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            return await _refuse(send, 413, "request body too large")
        body = b""
        deadline = asyncio.get_running_loop().time() + self.seconds
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - asyncio.get_running_loop().time()))
            except asyncio.TimeoutError:
                return await _refuse(send, 408, "request body too slow")
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.limit:
                return await _refuse(send, 413, "request body too large")
            if not message.get("more_body"):
                break
        if body and not _strict_json(body):
            return await _refuse(send, 422, "invalid JSON (malformed, duplicate keys or non-finite numbers)")
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _strict_json(body: bytes) -> bool:
    """Whether ``body`` is JSON without duplicate keys, NaN, Infinity or numbers that overflow."""

    def pairs(items: list[tuple[str, object]]) -> dict:
        keys = [key for key, _ in items]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate key")
        return dict(items)

    def number(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError("non-finite number")
        return value

    def constant(_: str) -> None:
        raise ValueError("non-finite number")

    try:
        json.loads(body, object_pairs_hook=pairs, parse_float=number, parse_constant=constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return True


async def _refuse(send: Send, status: int, detail: str) -> None:
    payload = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})


#: The request fields a validation error may name; anything else (dict keys, unknown fields) is not echoed.
KNOWN_FIELDS = frozenset({"alias", "scores", "viewport", "trial_seconds", "width", "height", "device_pixel_ratio", "position", "token"})


def invalid_fields(exc: RequestValidationError) -> list[str]:
    """The known field names a validation error is about (never a value, a dict key or an unknown name)."""
    named = {str(part) for error in exc.errors() for part in error.get("loc", ())}
    return sorted(named & KNOWN_FIELDS) or ["body"]


class PinnedHost:
    """ASGI middleware: answer only requests whose Host is ``host`` or loopback (IPv4, IPv6, localhost),
    with 400 otherwise; never a redirect (Starlette's TrustedHostMiddleware redirects to ``www.``)."""

    LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

    def __init__(self, app: ASGIApp, host: str) -> None:
        self.app, self.allowed = app, {host.lower()} | self.LOOPBACK

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            raw = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            try:
                host = (urlsplit(f"//{raw}").hostname or "").lower()
            except ValueError:
                host = ""
            if host not in self.allowed:
                return await _refuse(send, 400, "invalid host")
        await self.app(scope, receive, send)


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an ``Authorization: Bearer <token>`` header (scheme in any case), else None."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


class ViewportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int = Field(ge=1, le=100_000)
    height: int = Field(ge=1, le=100_000)
    device_pixel_ratio: float = Field(default=1.0, gt=0, le=16)


class ScoresIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scores: dict[Annotated[str, Field(max_length=32)], Annotated[int, Field(strict=True, ge=1, le=5)]] = Field(max_length=64)
    viewport: ViewportIn
    trial_seconds: float | None = Field(default=None, ge=0, le=86_400)  # time from display to submit


class EnrolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alias: str = Field(pattern=ALIAS_PATTERN)


def create_app(study: Study, db: Database, admin_token: str, *, invite_only: bool = False,
               max_raters: int = DEFAULT_MAX_RATERS, public_url: str | None = None) -> FastAPI:
    """The ASGI app of one study. ``admin_token`` guards ``/admin`` APIs; ``invite_only`` closes
    ``POST /api/raters``, which otherwise closes once the study has ``max_raters`` raters (invitations
    made on the admin page are always possible). ``public_url`` (e.g. ``https://study.example.org``):
    requests for any other host than its own and loopback are refused."""
    app = FastAPI(title=f"medsr MOS: {study.title}", docs_url=None, redoc_url=None, openapi_url=None)
    app.router.redirect_slashes = False  # Starlette builds those redirects from the request's Host header
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimit)
    if public_url:
        app.add_middleware(PinnedHost, host=urlsplit(public_url).hostname or "")
    images = {name: (study.images_dir / name).read_bytes() for name in study.image_files}  # served from memory

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": "invalid request", "fields": invalid_fields(exc)}, status_code=422)

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response: Response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"  # rater links carry their token
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self'; frame-ancestors 'none'"
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    def rater_of(token: Annotated[str, PathParam(pattern=TOKEN_PATTERN)]) -> Rater:
        rater = db.rater_by_token(token)
        if rater is None:
            raise HTTPException(404, "unknown rater link")
        return rater

    def admin(authorization: Annotated[str | None, Header()] = None) -> None:
        supplied = bearer_token(authorization) or ""
        if not hmac.compare_digest(supplied.encode(), admin_token.encode()):
            raise HTTPException(401, "admin token required", headers={"WWW-Authenticate": "Bearer"})

    RaterDep = Annotated[Rater, Depends(rater_of)]

    # -- pages ------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/r/{token}", include_in_schema=False)
    def rater_page(rater: RaterDep) -> FileResponse:
        return FileResponse(STATIC / "rater.html")

    @app.get("/admin", include_in_schema=False)
    def admin_page() -> FileResponse:
        return FileResponse(STATIC / "admin.html")

    @app.get("/healthz")
    def health() -> dict:
        return {"ok": True}

    @app.get("/images/{name}")
    def image(name: str) -> Response:
        if not IMAGE_NAME.match(name) or name not in images:
            raise HTTPException(404, "no such image")
        return Response(images[name], media_type="image/png", headers=IMAGE_HEADERS)

    # -- rater API --------------------------------------------------------------------------------
    @app.get("/api/study")
    def study_info() -> dict:
        return {"title": study.title, "n_trials": len(study.trials), "scale": {str(k): v for k, v in SCALE_LABELS.items()},
                "enrolment": "invite" if invite_only else "open", "narrow_screen_px": NARROW_SCREEN_PX}

    @app.post("/api/raters", status_code=201)
    def enrol(body: EnrolIn) -> dict:
        if invite_only:
            raise HTTPException(403, "this study is by invitation: ask the organiser for your link")
        return _new_rater(body.alias, max_raters)

    def _new_rater(alias: str, limit: int | None = None) -> dict:
        token = secrets.token_urlsafe(24)
        rater = db.add_rater(alias, token, max_raters=limit)
        if rater is None:
            raise HTTPException(403, f"enrolment is closed: this study has its {limit} raters; ask the organiser for a link")
        return {"rater_id": rater.public_id, "alias": rater.alias, "token": token, "link": f"/r/{token}"}

    @app.get("/api/rater/{token}")
    def progress(rater: RaterDep) -> dict:
        done = _trials_done(rater)
        return {
            "alias": rater.alias, "n_trials": len(study.trials), "n_done": len(done), "next_position": _first_open(done),
            "calibrated": rater.calibration is not None, "scale": {str(k): v for k, v in SCALE_LABELS.items()},
            "calibration": {"original": f"/images/{study.calibration_original}",
                            "items": [{"item_id": c.item_id, "url": f"/images/{c.file}"} for c in study.calibration]},
        }

    def _trials_done(rater: Rater) -> set[int]:
        scores = db.scores_of(rater.id)
        return {a.position for a in db.assignments(rater.id)
                if all(i.item_id in scores for i in study.trial_by_id[a.trial_id].items)}

    def _first_open(done: set[int]) -> int | None:
        """The first trial position not fully rated, None when all are."""
        return next((p for p in range(1, len(study.trials) + 1) if p not in done), None)

    @app.post("/api/rater/{token}/calibration")
    def calibrate(rater: RaterDep, body: ScoresIn) -> dict:
        expected = {c.item_id: c for c in study.calibration}
        if set(body.scores) != set(expected):
            raise HTTPException(422, "score every calibration image, and only those")
        stored = db.save_calibration(rater.id, body.scores)
        return {"feedback": [{"item_id": i, "your_score": stored[i], "expected": c.expected, "explanation": c.explanation}
                             for i, c in expected.items()]}

    @app.get("/api/rater/{token}/trials/{position}")
    def trial(rater: RaterDep, position: int) -> dict:
        assignment = _assignment(rater, position)
        db.mark_shown(rater.id, position)  # the server's clock times the trial too (report: implausibly fast raters)
        t = study.trial_by_id[assignment.trial_id]
        files = {i.item_id: i.file for i in t.items}
        order = _item_order(assignment)
        scores = db.scores_of(rater.id)
        return {"position": position, "n_trials": len(study.trials), "original": f"/images/{t.original}",
                "items": [{"item_id": item_id, "label": chr(ord("A") + k), "url": f"/images/{files[item_id]}",
                           "score": scores.get(item_id)} for k, item_id in enumerate(order)]}

    @app.post("/api/rater/{token}/trials/{position}")
    def rate(rater: RaterDep, position: int, body: ScoresIn) -> dict:
        if rater.calibration is None:
            raise HTTPException(409, "complete the calibration trial first")
        assignment = _assignment(rater, position)
        if assignment.shown_at is None:
            raise HTTPException(409, "open this trial before scoring it")
        order = _item_order(assignment)
        if set(body.scores) != set(order):
            raise HTTPException(422, "score every image of this trial, and only those")
        viewport = Viewport(body.viewport.width, body.viewport.height, body.viewport.device_pixel_ratio)
        rows = [(item_id, body.scores[item_id], k + 1) for k, item_id in enumerate(order)]
        stored = db.add_ratings(rater.id, assignment.trial_id, rows, viewport, body.trial_seconds)
        return {"stored": stored, "already_stored": len(rows) - stored, "next_position": _first_open(_trials_done(rater))}

    def _assignment(rater: Rater, position: int):
        assignment = db.assignment(rater.id, position) if 1 <= position <= len(study.trials) else None
        if assignment is None:
            raise HTTPException(404, f"no such trial (this study has {len(study.trials)})")
        return assignment

    # -- admin API --------------------------------------------------------------------------------
    AdminDep = Depends(admin)

    @app.get("/api/admin/progress", dependencies=[AdminDep])
    def admin_progress() -> dict:
        counts = db.ratings_per_rater()
        per_rater = study.n_ratings_per_rater
        return {"title": study.title, "n_trials": len(study.trials), "ratings_per_rater": per_rater,
                "raters": [{"rater_id": r.public_id, "alias": r.alias, "link": f"/r/{r.token}", "calibrated": r.calibration is not None,
                            "ratings": counts.get(r.id, 0), "complete": counts.get(r.id, 0) == per_rater,
                            "created_at": r.created_at.isoformat()} for r in db.raters()]}

    @app.post("/api/admin/raters", dependencies=[AdminDep], status_code=201)
    def admin_invite(body: EnrolIn) -> dict:
        return _new_rater(body.alias)

    @app.get("/api/admin/ratings.csv", dependencies=[AdminDep])
    def admin_csv() -> PlainTextResponse:
        from medsr.mos.report import ratings_csv

        return PlainTextResponse(ratings_csv(study, db.ratings()), media_type="text/csv",
                                 headers={"Content-Disposition": 'attachment; filename="ratings.csv"'})

    @app.get("/api/admin/results", dependencies=[AdminDep])
    def admin_results() -> JSONResponse:
        from medsr.mos.analysis import analyse

        return JSONResponse(analyse(study, db.ratings(), n_resamples=1000))

    return app


def _item_order(assignment) -> list[str]:
    return json.loads(assignment.item_order)
