"""Datasets over real HTTP: good uploads, the bad-upload table (4xx + nothing stored), limits, 404s."""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.e2e.harness import LiveServer, images_zip, make_settings, png_bytes, store_keys, upload_zip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("ds"), max_upload_bytes=2_000_000)
    with LiveServer(settings) as srv:
        yield srv


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


BAD_UPLOADS = {
    "not a zip": {"files": {"file": ("data.zip", b"this is not a zip archive at all", "application/zip")}},
    "empty zip": {"files": {"file": ("empty.zip", _zip({}), "application/zip")}},
    "text files named .png": {"files": {"file": ("fake.zip", _zip({f"{i}.png": b"hello, not an image" for i in range(10)}),
                                                 "application/zip")}},
    "one image only": {"files": {"file": ("one.zip", _zip({"a.png": png_bytes()}), "application/zip")}},
    "one image as files": {"files": [("files", ("a.png", png_bytes(), "image/png"))]},
    "no file field": {"data": {"name": "x"}, "files": {"other": ("x.bin", b"123", "application/octet-stream")}},
    "json instead of multipart": {"json": {"file": "abc"}},
    "file and files together": {"files": [("file", ("a.zip", images_zip(8), "application/zip")),
                                          ("files", ("b.png", png_bytes(), "image/png"))]},
    "bad resolution": {"files": {"file": ("ok.zip", images_zip(8), "application/zip")}, "data": {"resolution": "100"}},
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS), ids=list(BAD_UPLOADS))
def test_bad_upload_is_4xx_with_message_and_stores_nothing(server, case):
    before = store_keys(server.store)
    r = server.client.post("/v1/datasets", **BAD_UPLOADS[case])
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    detail = r.json()["detail"]
    assert isinstance(detail, str) and len(detail) > 15, detail
    assert store_keys(server.store) == before
    assert server.client.get("/healthz").status_code == 200


def test_too_large_upload_is_413_while_streaming(server):
    before = store_keys(server.store)
    big = b"\0" * 3_000_000

    def body():  # chunked, no Content-Length: the limit must trip while streaming
        yield b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.zip\"\r\n\r\n"
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]
        yield b"\r\n--B--\r\n"

    r = server.client.post("/v1/datasets", content=body(), headers={"content-type": "multipart/form-data; boundary=B"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    r = server.client.post("/v1/datasets", files={"file": ("x.zip", big, "application/zip")})
    assert r.status_code == 413
    assert store_keys(server.store) == before


def test_upload_zip_then_list_get_delete(server):
    r = upload_zip(server.client, images_zip(10), "tiny")
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["num_images"] == 10 and ds["resolution"] == 32 and ds["name"] == "tiny" and ds["id"].startswith("ds_")
    assert isinstance(ds["warnings"], list) and ds["created_at"]
    keys = store_keys(server.store)
    assert any(k.endswith(f"{ds['id']}/prepared.zip") for k in keys)
    assert any(k.endswith(f"{ds['id']}/original.zip") for k in keys)
    assert all(k.startswith("tenants/default/") for k in keys)

    assert server.client.get(f"/v1/datasets/{ds['id']}").json() == ds
    assert ds["id"] in [d["id"] for d in server.client.get("/v1/datasets").json()["data"]]
    assert server.client.delete(f"/v1/datasets/{ds['id']}").status_code == 204
    assert server.client.get(f"/v1/datasets/{ds['id']}").status_code == 404
    assert not any(ds["id"] in k for k in store_keys(server.store))


def test_upload_repeated_files_field(server):
    files = [("files", (f"im{i}.png", png_bytes(seed=i), "image/png")) for i in range(9)]
    files.append(("files", (".DS_Store", b"junk", "application/octet-stream")))
    r = server.client.post("/v1/datasets", files=files, data={"name": "loose"})
    assert r.status_code == 201, r.text
    assert r.json()["num_images"] == 9
    server.client.delete(f"/v1/datasets/{r.json()['id']}")


@pytest.mark.parametrize("bad_id", ["ds_00000000000000000000000000", "nope", "..%2F..%2Fetc", "ds_" + "f" * 200])
def test_unknown_or_malformed_dataset_ids_are_404(server, bad_id):
    assert server.client.get(f"/v1/datasets/{bad_id}").status_code == 404
    assert server.client.delete(f"/v1/datasets/{bad_id}").status_code == 404


def test_health_and_openapi(server):
    assert server.client.get("/healthz").json() == {"status": "ok"}
    r = server.client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"] == {"database": "ok", "storage": "ok", "broker": "ok"}
    paths = server.client.get("/openapi.json").json()["paths"]
    assert {"/v1/datasets", "/v1/jobs", "/v1/jobs/{job_id}/samples", "/v1/jobs/{job_id}/events"} <= set(paths)
    assert server.client.get("/docs").status_code == 200


def test_readyz_is_503_when_broker_unreachable(tmp_path):
    settings = make_settings(tmp_path, broker_url="redis://127.0.0.1:1/0")
    with LiveServer(settings) as srv:
        r = srv.client.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"] == {"database": "ok", "storage": "ok",
                                                               "broker": "unavailable"}
        assert "127.0.0.1" not in r.text and "Error" not in r.text  # which one, never its internal error text
