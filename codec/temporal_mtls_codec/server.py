"""Temporal codec server: POST /encode and /decode ({"payloads": [...]} in proto JSON), for the CLI and the Web UI.

Authenticated with a bearer token (``Authorization: Bearer <token>``, the CLI's ``--codec-auth``) or, for the
Web UI in a browser, a session cookie that ``/login`` sets after the same token was shown once (the UI
without single sign-on has no token to pass; its requests carry cookies with codecIncludeCredentials).
Browsers only from the configured origins (CORS). Order matters: a disallowed Origin is refused (403)
before anything else, a preflight from an allowed one is answered without a credential, every other
request needs one (401). Never logs payloads, keys or tokens.

    TEMPORAL_CODEC_DIR=/etc/temporal/codec CODEC_SERVER_TOKEN_FILE=/etc/codec-auth/token \
    CODEC_SERVER_ALLOWED_ORIGINS=http://localhost:8080 python -m temporal_mtls_codec.server
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from pathlib import Path

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from .codec import EncryptionCodec
from .config import codec_from_env

log = logging.getLogger(__name__)
CODEC = web.AppKey("codec", EncryptionCodec)
ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"
MAX_BODY = 8 * 1024 * 1024
SESSION_COOKIE = "temporal_codec_session"
SESSION_SECONDS = 12 * 3600
# /login: the token travels in the URL fragment (never sent over the network), then once as a bearer header.
LOGIN_PAGE = """<!doctype html><meta charset="utf-8"><title>Codec server sign-in</title>
<p id="state">Open this page as /login#&lt;token&gt; to let this browser decode payloads for the Temporal UI.</p>
<script>
const token = location.hash.slice(1);
history.replaceState(null, "", location.pathname);
if (token) fetch("/login", {method: "POST", headers: {Authorization: "Bearer " + token}})
  .then(r => document.getElementById("state").textContent = r.ok ? "signed in" : "refused (" + r.status + ")");
</script>
"""


class TokenFile:
    """The expected bearer token, re-read when its file changes (a rotated Secret needs no restart)."""

    def __init__(self, path: str | Path) -> None:
        self.path, self._seen, self._token = Path(path), None, b""

    def _current(self) -> bytes:
        stat = self.path.stat()
        if (stat.st_mtime_ns, stat.st_ino) != self._seen:
            self._token, self._seen = self.path.read_bytes().strip(), (stat.st_mtime_ns, stat.st_ino)
        return self._token

    def matches(self, header: str | None) -> bool:
        expected = self._current()
        scheme, _, token = (header or "").partition(" ")
        return bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected)

    def session(self) -> str:
        """The cookie value a signed-in browser holds: derived from the token, so a new token ends every session."""
        return hmac.new(self._current(), b"temporal-codec-session/v1", hashlib.sha256).hexdigest()

    def session_matches(self, cookie: str | None) -> bool:
        return bool(cookie) and bool(self._current()) and hmac.compare_digest(cookie.encode(), self.session().encode())


def create_app(codec: EncryptionCodec, token: TokenFile, allowed_origins: frozenset[str],
               metrics=None) -> web.Application:
    @web.middleware
    async def guard(request: web.Request, handler):
        origin = request.headers.get("Origin")
        same_origin = origin == f"{request.scheme}://{request.host}"  # the /login page's own POST
        if origin is not None and origin not in allowed_origins and not same_origin:
            return web.json_response({"error": "origin not allowed"}, status=403)
        if request.method == "OPTIONS":
            response = web.Response(status=204)
        elif request.path in ("/healthz", "/metrics") or (request.path == "/login" and request.method == "GET"):
            response = await handler(request)
        elif not (token.matches(request.headers.get("Authorization"))
                  or (request.path != "/login" and token.session_matches(request.cookies.get(SESSION_COOKIE)))):
            response = web.json_response({"error": "unauthorized"}, status=401,
                                         headers={"WWW-Authenticate": 'Bearer realm="codec"'})
        else:
            response = await handler(request)
        if origin is not None and not same_origin:
            response.headers.update({"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                                     "Access-Control-Allow-Credentials": "true",
                                     "Access-Control-Allow-Methods": "POST, OPTIONS",
                                     "Access-Control-Allow-Headers": ALLOWED_HEADERS})
        return response

    async def transcode(request: web.Request, encode: bool) -> web.Response:
        try:
            payloads = json_format.Parse(await request.text(), Payloads(), ignore_unknown_fields=True)
        except json_format.ParseError:
            return web.json_response({"error": "body is not a Payloads JSON object"}, status=400)
        try:
            done = await (codec.encode if encode else codec.decode)(payloads.payloads)
        except Exception as error:  # unknown key, tampered data: say which kind, never the content
            log.warning("%s failed: %s", "encode" if encode else "decode", type(error).__name__)
            return web.json_response({"error": f"cannot {'encode' if encode else 'decode'}: "
                                               f"{type(error).__name__}"}, status=422)
        return web.Response(text=json_format.MessageToJson(Payloads(payloads=done)), content_type="application/json")

    async def encode(request):
        return await transcode(request, True)

    async def decode(request):
        return await transcode(request, False)

    async def healthz(_):
        return web.json_response({"status": "ok"})

    async def login_page(_):
        return web.Response(text=LOGIN_PAGE, content_type="text/html",
                            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    async def login(_):  # reached only with the bearer token (the guard)
        response = web.json_response({"status": "signed in"})
        # SameSite=Strict: sent by the UI's same-site fetches (same host, another port), never from other sites.
        response.set_cookie(SESSION_COOKIE, token.session(), max_age=SESSION_SECONDS, httponly=True,
                            samesite="Strict", path="/")
        return response

    async def metrics_text(_):
        return web.Response(text=metrics() if metrics else "", content_type="text/plain")

    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    app[CODEC] = codec
    app.router.add_post("/encode", encode)
    app.router.add_post("/decode", decode)
    app.router.add_route("OPTIONS", "/{tail:.*}", healthz)  # answered by the guard
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_get("/metrics", metrics_text)
    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    codec = codec_from_env()
    if codec is None:
        raise SystemExit("TEMPORAL_CODEC_DIR is not set: nothing to decode with")
    origins = frozenset(o.strip() for o in os.environ.get("CODEC_SERVER_ALLOWED_ORIGINS", "").split(",") if o.strip())
    status = getattr(codec.keys, "status", None)
    app = create_app(codec, TokenFile(os.environ["CODEC_SERVER_TOKEN_FILE"]), origins,
                     metrics=status.metrics if status else None)
    web.run_app(app, port=int(os.environ.get("PORT", "8888")), access_log=None)


if __name__ == "__main__":
    main()
