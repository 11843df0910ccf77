"""Hostile model files and image uploads through the real API, in its own process (`python -m service up`).

Every file of tests/hostile_models.py (the issue's bombs and more) is refused with a 4xx within 5 s, while
the API process' peak RSS stays under 1 GiB (the parsing happens in a resource-limited child process).
Datasets: 2,000 small PNGs that each declare 40 megapixels are refused from their headers, before any
decode; a tenant's uploads decoding at once share one pixel budget across replicas.
"""

from __future__ import annotations

import io
import struct
import time
import zipfile
import zlib

import pytest

from tests.e2e.harness import ApiProcess, make_settings
from tests.hostile_models import hostile_models

pytestmark = pytest.mark.slow


def _peak_rss_bytes(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height, with a tiny (truncated) image stream."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    proc = ApiProcess(make_settings(root, max_decode_pixels_per_tenant=30_000_000), root / "api.log").start()
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


@pytest.mark.parametrize("bomb", hostile_models(), ids=lambda b: b.name)
def test_a_hostile_model_file_is_refused_quickly(api, bomb):
    started = time.monotonic()
    r = api.client.post("/v1/models", files={"file": (f"{bomb.name}{bomb.suffix}", bomb.data,
                                                       "application/octet-stream")})
    took = time.monotonic() - started
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert took < 5.0, f"{bomb.name} took {took:.1f} s"
    assert api.client.get("/v1/models").json()["data"] == []  # nothing stored


def test_the_api_process_stayed_small(api):
    assert api.client.get("/healthz").status_code == 200
    peak = _peak_rss_bytes(api.proc.pid)
    assert peak < 1 << 30, f"API peak RSS {peak / 2**20:.0f} MiB"
    print(f"API process peak RSS after every hostile upload: {peak / 2**20:.0f} MiB")


def test_pixel_bombs_are_refused_from_their_headers(api):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(2000):
            zf.writestr(f"bombs/{i:04d}.png", _png_declaring(8000, 5000))  # 40 MP declared, a few hundred bytes
    started = time.monotonic()
    r = api.client.post("/v1/datasets", files={"file": ("bombs.zip", buf.getvalue(), "application/zip")})
    assert r.status_code in (413, 422, 429), r.text
    assert "pixel" in r.json()["detail"].lower()
    assert time.monotonic() - started < 30
    assert api.client.get("/v1/datasets").json()["data"] == []


def test_a_tenants_decodes_at_once_share_one_pixel_budget(api):
    """The budget here is 30 MP for the tenant: an upload declaring 40 MP is refused (429) before decoding."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(10):
            zf.writestr(f"big/{i}.png", _png_declaring(2000, 2000))  # 10 x 4 MP
    r = api.client.post("/v1/datasets", files={"file": ("big.zip", buf.getvalue(), "application/zip")})
    assert r.status_code == 429 and "pixels being decoded" in r.json()["detail"], r.text
