"""What the app itself refuses before any route runs, over real HTTP.

- auth off: only loopback, also when uvicorn binds 0.0.0.0 directly (as deploy/Dockerfile.api once did);
  a Host that is not a loopback name (DNS rebinding) and a foreign Origin (a cross-site upload) are 403;
- request bodies are capped before they are read: a 100 MB body with no key is 413 at once, and a
  chunked body is cut off after the limit, not buffered;
- /docs and /redoc load every script and style from this origin.
"""

from __future__ import annotations

import re
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from tests.e2e.harness import LiveServer, images_zip, make_settings, upload_zip


def _non_loopback_ip() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.250", 9))  # no packet is sent: this only picks the outgoing interface
            ip = s.getsockname()[0]
        return None if ip.startswith("127.") else ip
    except OSError:
        return None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer(make_settings(tmp_path_factory.mktemp("guards"), max_json_body_bytes=64 * 1024)) as srv:
        yield srv


def test_auth_off_serves_loopback_only_even_when_uvicorn_binds_every_interface(tmp_path):
    from service.api.main import create_app

    ip = _non_loopback_ip()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect through")
    app = create_app(make_settings(tmp_path))
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="0.0.0.0", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        r = httpx.get(f"http://{ip}:{port}/v1/jobs", timeout=10)
        assert r.status_code == 403 and "DIGGAN_AUTH_REQUIRED" in r.json()["detail"], r.text
        assert httpx.get(f"http://127.0.0.1:{port}/v1/jobs", timeout=10).status_code == 200
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.parametrize("headers,needle", [
    ({"Host": "evil.example"}, "DNS-rebinding"),
    ({"Host": "evil.example:8000"}, "DNS-rebinding"),
    ({"Origin": "http://evil.example"}, "cross-site"),
    ({"Origin": "null"}, "opaque origin"),
])
def test_foreign_host_or_origin_is_403_while_auth_is_off(server, headers, needle):
    r = server.client.get("/v1/jobs", headers=headers)
    assert r.status_code == 403 and needle in r.json()["detail"]
    up = server.client.post("/v1/datasets", files={"file": ("d.zip", images_zip(8), "application/zip")},
                            headers=headers)
    assert up.status_code == 403


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
def test_loopback_names_and_origins_pass(server, host):
    port = server.port
    r = server.client.get("/v1/jobs", headers={"Host": f"{host}:{port}", "Origin": f"http://{host}:{port}"})
    assert r.status_code == 200, r.text


def test_a_100_mb_body_without_a_key_is_413_before_it_is_read(server):
    started = time.monotonic()
    r = httpx.post(f"{server.url}/v1/jobs", content=b"{" + b" " * 100_000_000 + b"}",
                   headers={"Content-Type": "application/json"}, timeout=60)
    assert r.status_code == 413 and "larger than 65,536 bytes" in r.json()["detail"]
    assert time.monotonic() - started < 30


def test_a_chunked_body_is_cut_off_after_the_limit(server):
    sent = 0

    def chunks():
        nonlocal sent
        for _ in range(1600):  # 100 MiB in 64 KiB chunks, no Content-Length
            sent += 65536
            yield b" " * 65536

    try:
        r = httpx.post(f"{server.url}/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"},
                       timeout=60)
        assert r.status_code == 413
    except httpx.TransportError:
        pass  # the server answered 413 and closed while the client was still writing
    assert sent < 16 * 1024 * 1024, f"{sent:,} bytes were sent before the server stopped reading"


def test_uploads_keep_their_own_larger_limit(server):
    r = upload_zip(server.client, images_zip(8, size=64))  # > 64 KiB, a dataset upload
    assert r.status_code == 201, r.text


def test_seed_lists_are_capped(server):
    r = server.client.post("/v1/jobs/job_00000000000000000000000000/samples", json={"seeds": list(range(5000))})
    assert r.status_code == 422 and "1024" in r.json()["detail"]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_nothing_from_other_origins(server, page):
    r = server.client.get(page)
    assert r.status_code == 200 and "Content-Security-Policy" in r.headers
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", r.text) + re.findall(r"url\(([^)]+)\)", r.text)
    assert urls and all(u.startswith("/") for u in urls), urls
    assert "googleapis" not in r.text and "cdn." not in r.text
    for u in urls:
        assert server.client.get(u).status_code == 200, u
