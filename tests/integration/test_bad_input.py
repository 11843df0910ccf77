"""The bad-input table over real HTTP (issue 6, "Bad input"), and the forgiving table.

Bad table: every row is a request that must answer a 4xx with a `detail` message, store nothing
(the whole store listed before/after) and leave /healthz at 200. Upload rows are built here in memory:
each hostile member sits among 8 good images, so the hostile part alone is what gets refused.

Forgiving table: odd-but-fine uploads (RGBA, grayscale, CMYK, 16-bit, EXIF-rotated, mixed sizes,
upper-case extensions, __MACOSX/.DS_Store junk, WebP) are accepted (201) with warnings.
"""

from __future__ import annotations

import io
import stat
import struct
import zipfile
import zlib

import pytest
from PIL import Image

from tests.e2e.harness import LiveServer, images_zip, make_settings, png_bytes, store_keys

MAX_UPLOAD = 2_000_000
MAX_FILES = 20  # repeated `files` fields per request
MAX_IMAGES = 30  # images per dataset


# --------------------------------------------------------------------------- builders


def _img(mode: str = "RGB", size=(36, 36), fmt: str = "PNG", seed: int = 0, **save) -> bytes:
    import numpy as np

    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "I;16":
        im = Image.fromarray((rng.random((h, w)) * 65535).astype("uint16"))
    else:
        im = Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8")).convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **save)
    return buf.getvalue()


def _good(n: int = 8) -> dict[str, bytes]:
    return {f"imgs/{i:03d}.png": png_bytes(36, seed=i) for i in range(n)}


def _zip(entries: dict[str, bytes] | list[tuple[zipfile.ZipInfo | str, bytes]], method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in (entries.items() if isinstance(entries, dict) else entries):
            zf.writestr(name, data)
    return buf.getvalue()


def _with(name: str, data: bytes) -> bytes:
    return _zip({**_good(), name: data})


def _symlink_zip() -> bytes:
    info = zipfile.ZipInfo("imgs/link.png")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return _zip(list(_good().items()) + [(info, b"/etc/passwd")])


def _bomb_png_member() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"\0" * (30 << 20)  # 30 MiB that deflates to ~30 KiB


def _decompression_bomb_png() -> bytes:
    """A ~60-byte PNG that declares 100000 x 100000 pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _truncated_jpeg() -> bytes:
    data = _img(fmt="JPEG", size=(64, 64))
    return data[: len(data) // 2]


def _corrupt_png() -> bytes:
    data = bytearray(_img(size=(64, 64)))
    data[60:90] = b"\xde\xad\xbe\xef" * 7 + b"\0\0"  # inside IDAT: CRC and zlib stream both broken
    return bytes(data)


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def _non_utf8_name_zip() -> bytes:
    # Written with a UTF-8 name (so zipfile sets the UTF-8 flag), then the name bytes made invalid UTF-8.
    raw = _zip({**_good(), "\u00c4AA.png": png_bytes(seed=99)})
    return raw.replace("\u00c4AA.png".encode(), b"\xff\xfeAA.png")


def _multipart(fields: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    b = "XyZb0undary"
    out = io.BytesIO()
    for field, filename, data in fields:
        out.write(f'--{b}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                  "Content-Type: application/octet-stream\r\n\r\n".encode())
        out.write(data + b"\r\n")
    out.write(f"--{b}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={b}"


def _oversize_stream():
    """3 MB, chunked, no Content-Length: the 2 MB limit must trip while the body streams in."""
    yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="x.zip"\r\n\r\n'
    for _ in range(48):
        yield b"\0" * 65536
    yield b"\r\n--B--\r\n"


def _upload_zip(data: bytes, name: str = "d.zip") -> dict:
    return {"files": {"file": (name, data, "application/zip")}}


def _upload_files(items: dict[str, bytes]) -> dict:
    return {"files": [("files", (n, d, "application/octet-stream")) for n, d in items.items()]}


BAD_UPLOADS: dict[str, dict] = {
    "zip traversal ../": _upload_zip(_with("../evil.png", png_bytes(seed=50))),
    "zip traversal nested a/../../": _upload_zip(_with("imgs/../../evil.png", png_bytes(seed=50))),
    "zip absolute path": _upload_zip(_with("/etc/evil.png", png_bytes(seed=50))),
    "zip drive letter": _upload_zip(_with("C:/evil.png", png_bytes(seed=50))),
    "zip backslash": _upload_zip(_with("imgs\\..\\evil.png", png_bytes(seed=50))),
    "zip symlink": _upload_zip(_symlink_zip()),
    "zip bomb (ratio, streamed)": _upload_zip(_with("imgs/bomb.png", _bomb_png_member())),
    "nested zip": _upload_zip(_with("more.zip", images_zip(2))),
    "nested tar.gz": _upload_zip(_with("more.tar.gz", b"\x1f\x8b" + b"\0" * 100)),
    "decompression-bomb PNG": _upload_zip(_with("imgs/huge.png", _decompression_bomb_png())),
    "truncated JPEG": _upload_zip(_with("imgs/cut.jpg", _truncated_jpeg())),
    "corrupt PNG": _upload_zip(_with("imgs/bad.png", _corrupt_png())),
    "text named .png": _upload_zip(_with("imgs/fake.png", b"hello, I am not an image at all")),
    "JPEG named .png (lying type)": _upload_zip(_with("imgs/liar.png", _img(fmt="JPEG"))),
    "HTML named .jpg": _upload_zip(_with("imgs/page.jpg", b"<html><script>alert(1)</script></html>")),
    "animated GIF": _upload_zip(_with("imgs/anim.gif", _animated_gif())),
    "0-byte image in zip": _upload_zip(_with("imgs/empty.png", b"")),
    "0-byte image as files": _upload_files({**{f"{i}.png": png_bytes(seed=i) for i in range(8)}, "e.png": b""}),
    "0-byte zip": _upload_zip(b""),
    "non-UTF-8 name": _upload_zip(_non_utf8_name_zip()),
    "very long name": _upload_zip(_with("imgs/" + "a" * 300 + ".png", png_bytes(seed=51))),
    "very long name as files": _upload_files({**{f"{i}.png": png_bytes(seed=i) for i in range(8)},
                                              "b" * 300 + ".png": png_bytes(seed=9)}),
    "unsupported .heic": _upload_zip(_with("imgs/phone.heic", b"\0\0\0\x18ftypheic")),
    "bzip2-compressed member": _upload_zip(_zip(_good(), method=zipfile.ZIP_BZIP2)),
    "too many images in zip": _upload_zip(_zip({f"{i}.png": png_bytes(16, seed=i) for i in range(MAX_IMAGES + 1)},
                                               method=zipfile.ZIP_STORED)),
    "too many files fields": _upload_files({f"{i}.png": png_bytes(16, seed=i) for i in range(MAX_FILES + 1)}),
    "too few usable images": _upload_zip(_zip({f"{i}.png": png_bytes(seed=i) for i in range(3)})),
    "only junk": _upload_zip(_zip({"__MACOSX/._a.png": b"x", ".DS_Store": b"x", "notes.txt": b"hi"})),
    "not a zip": _upload_zip(b"PK\x03\x04 this is not really a zip"),
    "empty zip": _upload_zip(_zip({})),
    "no file field": {"data": {"name": "x"}},
    "json instead of multipart": {"json": {"file": "abc"}},
    "both file and files": {"files": [("file", ("a.zip", images_zip(8), "application/zip")),
                                      ("files", ("b.png", png_bytes(), "image/png"))]},
    "two file fields": {"files": [("file", ("a.zip", images_zip(8), "application/zip")),
                                  ("file", ("b.zip", images_zip(8), "application/zip"))]},
    "resolution not a power of two": {**_upload_zip(images_zip(8)), "data": {"resolution": "100"}},
    "resolution not a number": {**_upload_zip(images_zip(8)), "data": {"resolution": "big"}},
    "over-size upload (Content-Length)": _upload_zip(b"\0" * (MAX_UPLOAD + 1)),
    "over-size upload (streamed, chunked)": {"content": "stream",
                                             "headers": {"content-type": "multipart/form-data; boundary=B"}},
    "malformed multipart": {"content": b"--B\r\nthis is not a part", "headers": {"content-type": "multipart/form-data; boundary=B"}},
}
UPLOAD_STATUS = {"over-size upload (Content-Length)": 413, "over-size upload (streamed, chunked)": 413,
                 "too many files fields": 413, "json instead of multipart": 415}

DS = "{ds}"
JOB = "{job}"
# (name, method, path, request kwargs, expected status or None for "any 4xx")
BAD_REQUESTS: list[tuple[str, str, str, dict, int | None]] = [
    ("job body not JSON", "POST", "/v1/jobs", {"content": b"{nope", "headers": {"content-type": "application/json"}}, 422),
    ("job body a list", "POST", "/v1/jobs", {"json": [1, 2]}, 422),
    ("job body empty", "POST", "/v1/jobs", {"json": {}}, 422),
    ("job dataset_id a number", "POST", "/v1/jobs", {"json": {"dataset_id": 5}}, 422),
    ("job kimg a string", "POST", "/v1/jobs", {"json": {"dataset_id": DS, "kimg": "lots"}}, 422),
    ("job kimg negative", "POST", "/v1/jobs", {"json": {"dataset_id": DS, "kimg": -1}}, 422),
    ("job kimg huge", "POST", "/v1/jobs", {"json": {"dataset_id": DS, "kimg": 1e12}}, 422),
    ("job kimg NaN", "POST", "/v1/jobs", {"content": b'{"dataset_id": "x", "kimg": NaN}',
                                          "headers": {"content-type": "application/json"}}, 422),
    ("job seed negative", "POST", "/v1/jobs", {"json": {"dataset_id": DS, "seed": -1}}, 422),
    ("job batch_size 10^6", "POST", "/v1/jobs", {"json": {"dataset_id": DS, "batch_size": 10**6}}, 422),
    ("job lr negative", "POST", "/v1/jobs", {"json": {"dataset_id": DS, "g_lr": -0.1}}, 422),
    ("job lr huge", "POST", "/v1/jobs", {"json": {"dataset_id": DS, "d_lr": 1e30}}, 422),
    ("job unknown preset", "POST", "/v1/jobs", {"json": {"dataset_id": DS, "preset": "huge"}}, 422),
    ("job unknown augment", "POST", "/v1/jobs", {"json": {"dataset_id": DS, "augment": "mixup"}}, 422),
    ("job unknown regularizer", "POST", "/v1/jobs", {"json": {"dataset_id": DS, "regularizers": [{"name": "gp", "weight": 1}]}}, 422),
    ("job regularizer unknown param", "POST", "/v1/jobs",
     {"json": {"dataset_id": DS, "regularizers": [{"name": "diggan", "weight": 1, "beta": 2}]}}, 422),
    ("job regularizers a string", "POST", "/v1/jobs", {"json": {"dataset_id": DS, "regularizers": "diggan"}}, 422),
    ("job unknown field", "POST", "/v1/jobs", {"json": {"dataset_id": DS, "bogus": 1}}, 422),
    ("job unknown dataset", "POST", "/v1/jobs", {"json": {"dataset_id": "ds_" + "0" * 26}}, 404),
    ("job malformed dataset id", "POST", "/v1/jobs", {"json": {"dataset_id": "../../etc/passwd"}}, 404),
    ("job idempotency key too long", "POST", "/v1/jobs", {"json": {"dataset_id": DS}, "headers": {"Idempotency-Key": "k" * 300}}, 422),
    ("samples psi 1e9", "POST", f"/v1/jobs/{JOB}/samples", {"json": {"psi": 1e9}}, 422),
    ("samples n 10^6", "POST", f"/v1/jobs/{JOB}/samples", {"json": {"n": 10**6}}, 422),
    ("samples n 0", "POST", f"/v1/jobs/{JOB}/samples", {"json": {"n": 0}}, 422),
    ("samples n a string", "POST", f"/v1/jobs/{JOB}/samples", {"json": {"n": "many"}}, 422),
    ("samples seeds negative", "POST", f"/v1/jobs/{JOB}/samples", {"json": {"seeds": [-1]}}, 422),
    ("samples seeds too many", "POST", f"/v1/jobs/{JOB}/samples", {"json": {"seeds": list(range(10**4))}}, 422),
    ("samples unknown format", "POST", f"/v1/jobs/{JOB}/samples", {"json": {"format": "gif"}}, 422),
    ("samples no checkpoint yet", "POST", f"/v1/jobs/{JOB}/samples", {"json": {"n": 1}}, 409),
    ("list jobs limit 0", "GET", "/v1/jobs?limit=0", {}, 422),
    ("list jobs limit 10^6", "GET", "/v1/jobs?limit=1000000", {}, 422),
    ("list jobs bad status", "GET", "/v1/jobs?status=exploded", {}, 422),
    ("list jobs bad cursor", "GET", "/v1/jobs?cursor=../../x", {}, 422),
    ("list datasets bad cursor", "GET", "/v1/datasets?cursor=job_x", {}, 422),
    ("list models bad cursor", "GET", "/v1/models?cursor=../x", {}, 422),
    ("list models limit 101", "GET", "/v1/models?limit=101", {}, 422),
    ("list projections bad cursor", "GET", f"/v1/jobs/{JOB}/projections?cursor=ds_x", {}, 422),
    ("events since_tick negative", "GET", f"/v1/jobs/{JOB}/events?since_tick=-1", {}, 422),
    ("unknown job id", "GET", "/v1/jobs/job_" + "0" * 26, {}, 404),
    ("malformed job id", "GET", "/v1/jobs/job_x", {}, 404),
    ("job id with traversal", "GET", "/v1/jobs/..%2F..%2Fsystem", {}, 404),
    ("very long job id", "GET", "/v1/jobs/job_" + "f" * 500, {}, 404),
    ("unknown dataset id", "GET", "/v1/datasets/ds_" + "0" * 26, {}, 404),
    ("malformed dataset id", "DELETE", "/v1/datasets/nope", {}, 404),
    ("cancel unknown job", "POST", "/v1/jobs/job_" + "0" * 26 + "/cancel", {}, 404),
    ("metrics malformed id", "GET", "/v1/jobs/%00/metrics", {}, 404),
    ("unknown checkpoint", "GET", f"/v1/jobs/{JOB}/checkpoints/ckpt-99.pt", {}, 404),
    ("checkpoint name traversal", "GET", f"/v1/jobs/{JOB}/checkpoints/..%2F..%2Frecords", {}, 404),
    ("grid of unknown checkpoint", "GET", f"/v1/jobs/{JOB}/checkpoints/latest/grid", {}, 404),
    ("malformed sample id", "GET", f"/v1/jobs/{JOB}/samples/smp_x", {}, 404),
    ("unknown sample id", "GET", f"/v1/jobs/{JOB}/samples/smp_" + "0" * 26, {}, 404),
    ("sample image index not a number", "GET", f"/v1/jobs/{JOB}/samples/smp_" + "0" * 26 + "/images/x", {}, 422),
    ("wrong method", "PUT", "/v1/jobs", {"json": {}}, 405),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("bad"), max_upload_bytes=MAX_UPLOAD, max_upload_files=MAX_FILES,
                             max_dataset_images=MAX_IMAGES, max_kimg=1000)
    with LiveServer(settings) as srv:
        ds = srv.client.post("/v1/datasets", **_upload_zip(images_zip(8))).json()["id"]
        job = srv.client.post("/v1/jobs", json={"dataset_id": ds, "kimg": 1}).json()["id"]
        srv.ids = {"ds": ds, "job": job}
        yield srv


def _check_refused(server, r, expected: int | None) -> None:
    if expected is None:
        assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    else:
        assert r.status_code == expected, (r.status_code, r.text[:500])
    detail = r.json()["detail"]
    assert isinstance(detail, str) and len(detail) >= 10, detail
    assert server.client.get("/healthz").status_code == 200


@pytest.mark.parametrize("case", list(BAD_UPLOADS), ids=list(BAD_UPLOADS))
def test_bad_upload(server, case):
    kw = dict(BAD_UPLOADS[case])
    if kw.get("content") == "stream":
        kw["content"] = _oversize_stream()
    before = store_keys(server.store)
    r = server.client.post("/v1/datasets", **kw)
    _check_refused(server, r, UPLOAD_STATUS.get(case))
    assert store_keys(server.store) == before, "a refused upload left objects behind"


def _fill(obj, ids):
    if isinstance(obj, str):
        return obj.replace(DS, ids["ds"]).replace(JOB, ids["job"])
    if isinstance(obj, dict):
        return {k: _fill(v, ids) for k, v in obj.items()}
    return obj


@pytest.mark.parametrize("name,method,path,kw,expected", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_request(server, name, method, path, kw, expected):
    before = store_keys(server.store)
    kw = {k: (_fill(v, server.ids) if k != "content" else v) for k, v in kw.items()}
    r = server.client.request(method, _fill(path, server.ids), **kw)
    _check_refused(server, r, expected)
    assert store_keys(server.store) == before


def test_bad_input_table_size():
    n = len(BAD_UPLOADS) + len(BAD_REQUESTS)
    print(f"\nbad-input table: {len(BAD_UPLOADS)} upload cases + {len(BAD_REQUESTS)} request cases = {n}; "
          f"forgiving table: {len(FORGIVING)} cases")
    assert len(BAD_UPLOADS) >= 35 and len(BAD_REQUESTS) >= 45


# --------------------------------------------------------------------------- forgiving


def _exif_rotated(seed: int) -> bytes:
    im = Image.open(io.BytesIO(_img(size=(48, 32), fmt="JPEG", seed=seed)))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif)
    return buf.getvalue()


FORGIVING: dict[str, tuple[dict[str, bytes], str | None]] = {
    "RGBA": ({f"{i}.png": _img("RGBA", seed=i) for i in range(8)}, "RGBA"),
    "grayscale": ({f"{i}.png": _img("L", seed=i) for i in range(8)}, "grayscale"),
    "CMYK JPEG": ({f"{i}.jpg": _img("CMYK", fmt="JPEG", seed=i) for i in range(8)}, "CMYK"),
    "16-bit": ({f"{i}.png": _img("I;16", seed=i) for i in range(8)}, "16-bit"),
    "palette": ({f"{i}.png": _img("P", seed=i) for i in range(8)}, "palette"),
    "EXIF-rotated": ({f"{i}.jpg": _exif_rotated(i) for i in range(8)}, "non-square"),
    "mixed sizes": ({f"{i}.png": _img(size=(32 + 8 * i, 32 + 8 * i), seed=i) for i in range(8)}, "different sizes"),
    "upper-case extensions": ({f"IMG_{i}.{'PNG' if i % 2 else 'JPG'}": _img(fmt="PNG" if i % 2 else "JPEG", seed=i)
                               for i in range(8)}, None),
    "__MACOSX and .DS_Store junk": ({**{f"a/{i}.png": _img(seed=i) for i in range(8)}, "__MACOSX/a/._0.png": b"\0\5\26\7",
                                     "a/.DS_Store": b"\0\0\0\1Bud1", "Thumbs.db": b"x"}, "Skipped"),
    "WebP": ({f"{i}.webp": _img(fmt="WEBP", seed=i) for i in range(8)}, None),
    "non-image junk": ({**{f"{i}.png": _img(seed=i) for i in range(8)}, "README.txt": b"hi"}, "non-image"),
}


@pytest.mark.parametrize("case", list(FORGIVING), ids=list(FORGIVING))
def test_forgiving_upload(server, case):
    entries, warning = FORGIVING[case]
    r = server.client.post("/v1/datasets", **_upload_zip(_zip(entries)), data={"name": case})
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["num_images"] == 8 and ds["resolution"] >= 32
    if warning:
        assert any(warning in w for w in ds["warnings"]), ds["warnings"]
    assert server.client.delete(f"/v1/datasets/{ds['id']}").status_code == 204


def test_forgiving_via_files_field(server):
    files = {**{f"{i}.PNG": _img("RGBA", seed=i) for i in range(4)}, **{f"{i}.webp": _img(fmt="WEBP", seed=i) for i in range(4)},
             ".DS_Store": b"junk"}
    r = server.client.post("/v1/datasets", **_upload_files(files))
    assert r.status_code == 201, r.text
    assert r.json()["num_images"] == 8 and r.json()["warnings"]
    server.client.delete(f"/v1/datasets/{r.json()['id']}")
