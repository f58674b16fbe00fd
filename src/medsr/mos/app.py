"""The reader-study web app (FastAPI): rater pages and API, admin pages and exports, images.

Routes (``T`` is a rater's secret token, the key of their resume link ``/r/T``):

* ``GET /`` instructions and enrolment; ``POST /api/raters`` enrols (unless invite-only or the study has its ``max_raters``);
* ``GET /r/T`` the rater's page; ``GET /api/rater/T`` their progress; ``POST /api/rater/T/calibration``;
  ``GET|POST /api/rater/T/trials/{position}`` one trial (original + unlabelled items, their stored order)
  (``medsr.mos.rater_api``);
* ``GET /images/{name}`` a study image (names are checked against the study: nothing else is served);
* ``GET /admin`` the organiser's page; ``/api/admin/...`` progress, invitations, ratings.csv and results,
  all behind ``Authorization: Bearer <admin token>`` (``medsr.mos.admin_api``).

A rater sees only their own trials and scores; which item is which method never leaves the server,
and nothing else they can observe tells it: images are served from memory with the same headers
(no ETag, no Last-Modified) and, within a trial, the same size (``medsr.mos.build``). Hostile requests
meet ``medsr.mos.guards``; no redirect is built from the request's Host header, and with
``public_url`` only that host (and loopback) is served.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from medsr.mos import admin_api, rater_api
from medsr.mos.context import Context, RaterDep, StudyContext
from medsr.mos.db import Database
from medsr.mos.guards import BodyLimit, PinnedHost, invalid_fields, security_headers
from medsr.mos.study import IMAGE_NAME, Study

STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_RATERS = 200  # open enrolment closes here: bounds what an anonymous visitor can add
IMAGE_HEADERS = {
    "Cache-Control": "private, max-age=3600"
}  # the same for every image: no ETag, no Last-Modified

pages = APIRouter()


@pages.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html")


@pages.get("/r/{token}", include_in_schema=False)
def rater_page(rater: RaterDep) -> FileResponse:
    return FileResponse(STATIC / "rater.html")


@pages.get("/admin", include_in_schema=False)
def admin_page() -> FileResponse:
    return FileResponse(STATIC / "admin.html")


@pages.get("/healthz")
def health() -> dict:
    return {"ok": True}


@pages.get("/images/{name}")
def image(name: str, ctx: Context) -> Response:
    if not IMAGE_NAME.match(name) or name not in ctx.images:
        raise HTTPException(404, "no such image")
    return Response(ctx.images[name], media_type="image/png", headers=IMAGE_HEADERS)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": "invalid request", "fields": invalid_fields(exc)}, status_code=422)


def create_app(
    study: Study,
    db: Database,
    admin_token: str,
    *,
    invite_only: bool = False,
    max_raters: int = DEFAULT_MAX_RATERS,
    public_url: str | None = None,
) -> FastAPI:
    """The ASGI app of one study. ``admin_token`` guards ``/admin`` APIs; ``invite_only`` closes
    ``POST /api/raters``, which otherwise closes once the study has ``max_raters`` raters (invitations
    made on the admin page are always possible). ``public_url`` (e.g. ``https://study.example.org``):
    requests for any other host than its own and loopback are refused."""
    app = FastAPI(title=f"medsr MOS: {study.title}", docs_url=None, redoc_url=None, openapi_url=None)
    app.router.redirect_slashes = False  # Starlette builds those redirects from the request's Host header
    app.state.study = StudyContext(
        study,
        db,
        admin_token,
        invite_only,
        max_raters,
        {name: (study.images_dir / name).read_bytes() for name in study.image_files},
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in (pages, rater_api.router, admin_api.router):
        app.include_router(router)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_middleware(BodyLimit)
    if public_url:
        app.add_middleware(PinnedHost, host=urlsplit(public_url).hostname or "")
    app.middleware("http")(security_headers)  # added last: the outermost, so refusals carry the headers too
    return app
