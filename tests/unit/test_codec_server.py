"""The codec server over real HTTP (aiohttp's test server on a loopback port): protocol, auth, CORS."""

from __future__ import annotations

import asyncio
import base64
import json
import os

import pytest
from aiohttp.test_utils import TestClient, TestServer

from temporal_mtls_codec import EncryptionCodec, SecretKeyProvider
from temporal_mtls_codec.server import TokenFile, create_app

ORIGIN = "http://ui.example:8080"
TOKEN = "s3cret-token"


@pytest.fixture
def setup(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "k1.key").write_bytes(os.urandom(32))
    (keys / "active").write_text("k1")
    (tmp_path / "token").write_text(TOKEN + "\n")
    codec, token = EncryptionCodec(SecretKeyProvider(keys)), TokenFile(tmp_path / "token")
    return (lambda: create_app(codec, token, frozenset({ORIGIN}))), tmp_path  # one app per event loop


def call(app, method: str, path: str, body=None, headers=None):
    async def go():
        async with TestClient(TestServer(app())) as client:
            response = await client.request(method, path, data=json.dumps(body) if body is not None else None,
                                            headers=headers or {})
            return response.status, dict(response.headers), await response.text()
    return asyncio.run(go())


def plain_payloads(text: str) -> dict:
    return {"payloads": [{"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                          "data": base64.b64encode(json.dumps(text).encode()).decode()}]}


AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def test_encode_then_decode_round_trips_in_the_protocols_json(setup):
    app, _ = setup
    status, _, body = call(app, "POST", "/encode", plain_payloads("Hello World!"), AUTH)
    assert status == 200
    [encoded] = json.loads(body)["payloads"]
    assert base64.b64decode(encoded["metadata"]["encoding"]) == b"binary/encrypted"
    assert base64.b64decode(encoded["metadata"]["encryption-key-id"]) == b"k1"
    assert b"Hello" not in base64.b64decode(encoded["data"])
    status, _, body = call(app, "POST", "/decode", {"payloads": [encoded]}, {**AUTH, "X-Namespace": "default"})
    assert status == 200 and json.loads(body) == plain_payloads("Hello World!")


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer ", TOKEN])
def test_requests_without_the_token_are_refused_with_401(setup, authorization):
    app, _ = setup
    headers = {"Authorization": authorization} if authorization is not None else {}
    status, response_headers, body = call(app, "POST", "/decode", plain_payloads("x"), headers)
    assert status == 401 and response_headers["WWW-Authenticate"].startswith("Bearer")
    assert "x" not in json.loads(body).get("payloads", [])


def test_a_disallowed_origin_is_refused_with_403_even_with_the_token(setup):
    app, _ = setup
    status, headers, _ = call(app, "POST", "/decode", plain_payloads("x"), {**AUTH, "Origin": "http://evil.example"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    status, headers, _ = call(app, "OPTIONS", "/decode", None, {
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers


def test_the_allowed_origin_gets_its_preflight_and_cors_headers(setup):
    app, _ = setup
    status, headers, _ = call(app, "OPTIONS", "/decode", None, {
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace"})
    assert status == 204 and headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    status, headers, _ = call(app, "POST", "/decode", plain_payloads("x"), {**AUTH, "Origin": ORIGIN})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == ORIGIN
    status, _, _ = call(app, "POST", "/decode", plain_payloads("x"), {"Origin": ORIGIN})
    assert status == 401  # an allowed origin still needs the token


def test_a_rotated_token_file_takes_effect_without_a_restart(setup):
    app, tmp_path = setup
    (tmp_path / "token.new").write_text("next-token")
    os.replace(tmp_path / "token.new", tmp_path / "token")  # as the kubelet swaps a Secret's files
    assert call(app, "POST", "/decode", plain_payloads("x"), AUTH)[0] == 401
    assert call(app, "POST", "/decode", plain_payloads("x"), {"Authorization": "Bearer next-token"})[0] == 200


def test_bad_bodies_and_undecodable_payloads_are_client_errors(setup):
    app, _ = setup
    assert call(app, "POST", "/decode", None, AUTH)[0] == 400
    bogus = {"payloads": [{"metadata": {"encoding": base64.b64encode(b"binary/encrypted").decode(),
                                        "encryption-key-id": base64.b64encode(b"k1").decode()},
                           "data": base64.b64encode(os.urandom(40)).decode()}]}
    status, _, body = call(app, "POST", "/decode", bogus, AUTH)
    assert status == 422 and json.loads(body) == {"error": "cannot decode: InvalidTag"}


def test_login_sets_a_session_cookie_that_replaces_the_token_for_the_browser(setup):
    app, tmp_path = setup

    async def go():
        async with TestClient(TestServer(app())) as client:
            page = await client.get("/login")
            assert page.status == 200 and "location.hash" in await page.text()
            assert (await client.post("/login")).status == 401
            assert (await client.post("/login", headers={"Authorization": "Bearer wrong"})).status == 401
            own_origin = f"http://{page.url.host}:{page.url.port}"
            signed = await client.post("/login", headers={"Authorization": f"Bearer {TOKEN}", "Origin": own_origin})
            assert signed.status == 200
            cookie = signed.cookies["temporal_codec_session"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict" and TOKEN not in cookie.value
            # The UI's fetch: allowed origin, the cookie, no Authorization header.
            decoded = await client.post("/decode", data=json.dumps(plain_payloads("x")), headers={"Origin": ORIGIN})
            assert decoded.status == 200 and decoded.headers["Access-Control-Allow-Credentials"] == "true"
            client.session.cookie_jar.clear()
            body = json.dumps(plain_payloads("x"))
            assert (await client.post("/decode", data=body, headers={"Cookie": "temporal_codec_session=forged"})
                    ).status == 401
            session = {"Cookie": f"temporal_codec_session={cookie.value}"}
            assert (await client.post("/decode", data=body, headers=session)).status == 200
            (tmp_path / "token").write_text("rotated")  # a new token ends the session
            os.utime(tmp_path / "token", ns=(1, 1))
            assert (await client.post("/decode", data=body, headers=session)).status == 401
    asyncio.run(go())
