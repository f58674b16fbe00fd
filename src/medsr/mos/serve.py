"""``medsr mos serve``: the study's web app under uvicorn.

The server owns the database's life: on an orderly shutdown (SIGTERM or Ctrl-C) the ASGI lifespan
shutdown closes the database, which checkpoints SQLite's write-ahead log into ``mos.sqlite``
(uvicorn re-raises SIGTERM after its shutdown, so code after ``uvicorn.run`` would never run); while
serving, a background thread checkpoints every ``checkpoint_seconds`` (``PASSIVE``: it never makes a
rater wait), so even after ``kill -9`` the file alone holds all but the last few seconds of ratings.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from medsr.errors import MedsrError

if TYPE_CHECKING:
    from medsr.mos.db import Database

ADMIN_TOKEN_ENV = "MEDSR_MOS_ADMIN_TOKEN"
MIN_TOKEN_LENGTH = 16
SHUTDOWN_GRACE_SECONDS = 5  # open requests get this long to finish when the server is stopped
CHECKPOINT_SECONDS = 60.0
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
log = logging.getLogger(__name__)


def admin_token_from_environment() -> str | None:
    """The organiser's token from ``MEDSR_MOS_ADMIN_TOKEN``, if set (at least 16 characters)."""
    token = os.environ.get(ADMIN_TOKEN_ENV)
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise MedsrError(f"{ADMIN_TOKEN_ENV}: use at least {MIN_TOKEN_LENGTH} characters")
    return token


def checked_public_url(url: str | None) -> str | None:
    """``url`` without a trailing slash if it is ``http(s)://HOST[:PORT]``; else a one-line MedsrError."""
    if url is None:
        return None
    expected = f"--public-url: expected http(s)://HOST[:PORT], e.g. https://study.example.org; got {url!r}"
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise MedsrError(expected) from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username
        or parts.password
        or parts.query
        or parts.fragment
        or any(c.isspace() for c in url.strip())
    ):
        raise MedsrError(expected)
    if parts.path.strip("/"):
        raise MedsrError(
            f"--public-url: serve the study at the root of its host (a path such as {parts.path!r} "
            "is not supported); got {url!r}"
        )
    return url.strip().rstrip("/")


class PeriodicCheckpoint:
    """A daemon thread that runs ``db.checkpoint("PASSIVE")`` every ``seconds`` until :meth:`stop`."""

    def __init__(self, db: "Database", seconds: float) -> None:
        self.db, self.seconds = db, seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mos-checkpoint", daemon=True)

    def start(self) -> "PeriodicCheckpoint":
        if self.db.dialect == "sqlite":  # PostgreSQL has nothing to checkpoint
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                self.db.checkpoint("PASSIVE")
            except Exception as exc:  # keep serving; the next round tries again
                log.warning("mos: periodic checkpoint failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)


class ShutdownHook:
    """ASGI wrapper: calls ``on_shutdown()`` when the app has finished its lifespan shutdown, i.e. on
    every orderly stop of the server (SIGTERM, SIGINT), before uvicorn re-raises the signal."""

    def __init__(self, app, on_shutdown: Callable[[], None]) -> None:
        self.app, self.on_shutdown = app, on_shutdown

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_after_shutdown(message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                self.on_shutdown()
            await send(message)

        await self.app(scope, receive, send_after_shutdown)


def serve(
    study_dir: str,
    db_url: str | None,
    host: str,
    port: int,
    *,
    invite_only: bool = False,
    max_raters: int | None = None,
    public_url: str | None = None,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
) -> None:
    """Open the study and its database, print the addresses and the admin token, and serve until
    SIGTERM or Ctrl-C; the database is checkpointed every ``checkpoint_seconds`` and closed on the way out.

    ``public_url`` (e.g. ``https://study.example.org``, the reverse proxy's address) is what raters are
    told and what the app accepts as its host."""
    import uvicorn

    from medsr.mos.app import DEFAULT_MAX_RATERS, create_app
    from medsr.mos.db import Database, database_url
    from medsr.mos.study import load_study

    public_url = checked_public_url(public_url)
    if not checkpoint_seconds > 0:
        raise MedsrError(f"--checkpoint-seconds: must be more than 0, got {checkpoint_seconds}")
    token = admin_token_from_environment()
    study = load_study(study_dir)
    db = Database(database_url(study, db_url), study)
    shown = f"(from {ADMIN_TOKEN_ENV})" if token else None
    token = token or secrets.token_urlsafe(24)
    limit = DEFAULT_MAX_RATERS if max_raters is None else max_raters
    try:
        app = create_app(study, db, token, invite_only=invite_only, max_raters=limit, public_url=public_url)
    except BaseException:
        db.close()
        raise
    _print_banner(study, db.dialect, host, port, public_url, invite_only, limit, shown or token)
    checkpoints = PeriodicCheckpoint(db, checkpoint_seconds).start()

    def shut_down() -> None:
        checkpoints.stop()
        db.close()

    try:
        # a client holding a request open cannot delay the stop (and its checkpoint) beyond the grace time
        uvicorn.run(
            ShutdownHook(app, shut_down),
            host=host,
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        )
    finally:
        shut_down()  # a forced exit skips the lifespan; closing twice is harmless


def _print_banner(
    study,
    dialect: str,
    host: str,
    port: int,
    public_url: str | None,
    invite_only: bool,
    limit: int,
    token_shown: str,
) -> None:
    """What the organiser needs: the study, the raters' and admin addresses, the admin token."""
    local = f"http://{host}:{port}"
    address = public_url or local
    print(
        f"study '{study.title}': {len(study.trials)} trials, {study.n_ratings_per_rater} ratings per rater; "
        f"database {dialect}",
        flush=True,
    )
    enrolment = (
        "invitation only: create links on the admin page"
        if invite_only
        else f"open enrolment up to {limit} raters"
    )
    print(f"raters: {address}/  ({enrolment})", flush=True)
    print(f"admin:  {address}/admin", flush=True)
    print(f"admin token: {token_shown}", flush=True)
    if public_url:
        print(f"listening on {local} (point the reverse proxy for {public_url} here)", flush=True)
    if host not in LOCAL_HOSTS and not (public_url or "").startswith("https://"):
        print(
            "note: serving beyond this machine; put it behind HTTPS (a reverse proxy) so tokens are not sent in clear",
            flush=True,
        )
