"""The ObjectStore contract, run against LocalStore (a temp dir) and S3Store (a real
moto S3 server on loopback), plus S3-only tests: outage and recovery, retries, stream
resumption, multipart, race-safe bucket creation.

Server fixtures (s3_server, s3_bucket) come from tests/servers.py.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from service.core.storage import InvalidKey, LocalStore, ObjectInfo, ObjectNotFound, StorageUnavailable
from service.core.storage.base import StorageError

s3mod = pytest.importorskip("service.core.storage.s3", reason="minio SDK not installed")
S3Store, RetryPolicy = s3mod.S3Store, s3mod.RetryPolicy

# Short budgets keep a broken test from hanging; the outage tests set their own.
FAST_RETRY = RetryPolicy(attempts=3, max_seconds=3.0, base_delay=0.05, max_delay=0.2)


def make_s3(server, bucket: str, retry=FAST_RETRY, **kw) -> S3Store:
    return S3Store(
        endpoint=server.endpoint,
        access_key=server.access_key,
        secret_key=server.secret_key,
        bucket=bucket,
        region=server.region,
        retry=retry,
        **kw,
    )


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    server = request.getfixturevalue("s3_server")
    return make_s3(server, request.getfixturevalue("s3_bucket"))


def is_s3(store) -> bool:
    return isinstance(store, S3Store)


# --------------------------------------------------------------------------- contract


def test_put_get_round_trip(store):
    data = bytes(range(256)) * 10
    assert not store.exists("jobs/j1/meta.bin")
    store.put_bytes("jobs/j1/meta.bin", data)
    assert store.get_bytes("jobs/j1/meta.bin") == data
    assert store.exists("jobs/j1/meta.bin")
    assert store.size("jobs/j1/meta.bin") == len(data)
    store.put_bytes("jobs/j1/empty", b"")
    assert store.get_bytes("jobs/j1/empty") == b""
    assert store.size("jobs/j1/empty") == 0


def test_json_helpers(store):
    store.put_json("jobs/j1/record.json", {"state": "queued", "n": 3})
    assert store.get_json("jobs/j1/record.json") == {"state": "queued", "n": 3}


def test_overwrite_replaces_whole_object(store):
    store.put_bytes("a/obj", b"x" * 1000)
    store.put_bytes("a/obj", b"short")
    assert store.get_bytes("a/obj") == b"short"
    assert store.size("a/obj") == 5
    assert [o.key for o in store.list("a/")] == ["a/obj"]


def test_list_is_sorted_and_uses_string_prefixes(store):
    keys = ["jobs/b/2.bin", "jobs/a/10.bin", "datasets/d1/data.zip", "jobs/ab/x", "jobs/a/1.bin", "jobs/a/sub/deep.bin"]
    for i, k in enumerate(keys):
        store.put_bytes(k, b"z" * (i + 1))
    every = store.list("")
    assert [o.key for o in every] == sorted(keys)
    assert all(isinstance(o, ObjectInfo) for o in every)
    sizes = {o.key: o.size for o in every}
    assert sizes == {k: i + 1 for i, k in enumerate(keys)}
    assert all(isinstance(o.last_modified, datetime) and o.last_modified.tzinfo is not None for o in every)

    assert [o.key for o in store.list("jobs/a/")] == ["jobs/a/1.bin", "jobs/a/10.bin", "jobs/a/sub/deep.bin"]
    # A prefix is a string prefix (S3 semantics), not a directory name.
    assert [o.key for o in store.list("jobs/a")] == ["jobs/a/1.bin", "jobs/a/10.bin", "jobs/a/sub/deep.bin", "jobs/ab/x"]
    assert [o.key for o in store.list("jobs/a/1")] == ["jobs/a/1.bin", "jobs/a/10.bin"]
    assert store.list("nothing/") == []
    assert store.list("jobs/zzz") == []


def test_delete_and_delete_prefix(store):
    for k in ["jobs/a/1", "jobs/a/2", "jobs/a/sub/3", "jobs/ab/4", "jobs/b/5"]:
        store.put_bytes(k, b"v")
    store.delete("jobs/b/5")
    assert not store.exists("jobs/b/5")
    store.delete("jobs/b/5")  # idempotent: deleting a missing key is fine
    store.delete_prefix("jobs/a/")
    assert [o.key for o in store.list("jobs/")] == ["jobs/ab/4"]
    store.delete_prefix("jobs/a/")  # nothing left to delete: still fine
    store.delete_prefix("jobs/")
    assert store.list("") == []


def test_missing_key_raises_object_not_found(store, tmp_path):
    with pytest.raises(ObjectNotFound):
        store.get_bytes("no/such/key")
    with pytest.raises(ObjectNotFound):
        store.size("no/such/key")
    with pytest.raises(ObjectNotFound):
        store.iter_bytes("no/such/key")  # raised on the call, not on the first next()
    with pytest.raises(KeyError):  # ObjectNotFound is a KeyError too
        store.get_bytes("no/such/key")
    assert store.exists("no/such/key") is False
    dest = tmp_path / "dest.bin"
    with pytest.raises(ObjectNotFound):
        store.get_file("no/such/key", dest)
    assert not dest.exists()


def test_invalid_keys_are_rejected(store):
    for bad in ["", "/abs", "a/../b", "a//b", "a/./b", "with space", "back\\slash"]:
        with pytest.raises(InvalidKey):
            store.put_bytes(bad, b"x")
    with pytest.raises(InvalidKey):
        store.get_bytes("../etc/passwd")


def test_iter_bytes_streams_in_chunks(store):
    data = bytes(range(256)) * 40  # 10240 bytes
    store.put_bytes("blobs/big", data)
    it = store.iter_bytes("blobs/big", chunk_size=4096)
    chunks = list(it)
    assert [len(c) for c in chunks] == [4096, 4096, 2048]
    assert b"".join(chunks) == data
    # Abandon a stream half way, many times: connections must be released, not leaked.
    for _ in range(40):
        it = store.iter_bytes("blobs/big", chunk_size=1024)
        assert next(it) == data[:1024]
        it.close()
    assert store.get_bytes("blobs/big") == data


def test_put_file_and_get_file(store, tmp_path):
    src = tmp_path / "src.bin"
    payload = bytes(range(256)) * 1000
    src.write_bytes(payload)
    store.put_file("datasets/d1/data.zip", src, content_type="application/zip")
    dest_dir = tmp_path / "out"
    dest_dir.mkdir()
    dest = dest_dir / "data.zip"
    dest.write_bytes(b"old contents")
    store.get_file("datasets/d1/data.zip", dest)
    assert dest.read_bytes() == payload
    assert sorted(p.name for p in dest_dir.iterdir()) == ["data.zip"]  # no temp left behind
    # Missing key: the old file stays as it was.
    with pytest.raises(ObjectNotFound):
        store.get_file("datasets/d1/missing.zip", dest)
    assert dest.read_bytes() == payload
    with pytest.raises(FileNotFoundError):
        store.put_file("datasets/d1/x", tmp_path / "does-not-exist")


def test_readers_never_see_a_partial_object(store):
    """Overwrites race with reads: every read is one whole version."""
    a, b = b"A" * 300_000, b"B" * 200_000
    store.put_bytes("race/obj", a)
    stop = threading.Event()
    seen: set[bytes] = set()
    errors: list[BaseException] = []

    def writer() -> None:
        i = 0
        while not stop.is_set():
            store.put_bytes("race/obj", a if i % 2 else b)
            i += 1

    def reader() -> None:
        try:
            while not stop.is_set():
                got = store.get_bytes("race/obj")
                assert got in (a, b), f"partial read: {len(got)} bytes"
                seen.add(got[:1])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(10)
    assert not errors, errors[0]
    assert seen  # the readers did read


def test_presigned_get_url(store):
    store.put_bytes("samples/s1/grid.png", b"\x89PNG fake")
    url = store.presigned_get_url("samples/s1/grid.png", expires_seconds=60)
    if not is_s3(store):
        assert url is None
        return
    assert url and url.startswith(f"http://{store.endpoint}/{store.bucket}/samples/s1/grid.png?")
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["60"]  # the expiry asked for
    resp = httpx.get(url, timeout=5)
    assert resp.status_code == 200
    assert resp.content == b"\x89PNG fake"
    default = store.presigned_get_url("samples/s1/grid.png")
    assert parse_qs(urlsplit(default).query)["X-Amz-Expires"] == ["900"]
    for bad in (0, -5, 8 * 24 * 3600):
        with pytest.raises(ValueError):
            store.presigned_get_url("samples/s1/grid.png", expires_seconds=bad)


def test_ping_ok(store):
    store.ping()


# --------------------------------------------------------------------------- S3 only


def test_s3_presigned_url_for_public_endpoint(s3_server, s3_bucket):
    store = make_s3(s3_server, s3_bucket, public_endpoint=f"localhost:{s3_server.port}")
    store.put_bytes("k/v", b"hello")
    url = store.presigned_get_url("k/v", expires_seconds=120)
    assert url.startswith(f"http://localhost:{s3_server.port}/{s3_bucket}/k/v?")
    assert httpx.get(url, timeout=5).content == b"hello"


def test_s3_multipart_upload(s3_server, s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setattr(s3mod, "PART_SIZE", 5 * 1024 * 1024)  # the S3 minimum: 3 parts below
    store = make_s3(s3_server, s3_bucket)
    src = tmp_path / "big.bin"
    block = bytes(range(256)) * 4096  # 1 MiB
    src.write_bytes(block * 11)
    store.put_file("ckpt/big.bin", src)
    assert store.size("ckpt/big.bin") == 11 * len(block)
    dest = tmp_path / "back.bin"
    store.get_file("ckpt/big.bin", dest)
    assert dest.read_bytes() == src.read_bytes()
    store.put_bytes("ckpt/big2.bin", block * 6)  # bytes take the multipart path too
    assert store.get_bytes("ckpt/big2.bin") == block * 6


def test_s3_bucket_creation_is_race_safe(s3_server, s3_bucket):
    stores = [make_s3(s3_server, s3_bucket) for _ in range(6)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def go(s) -> None:
        try:
            barrier.wait(5)
            s.ensure_bucket()
            s.put_bytes(f"who/{id(s)}", b"1")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors[0]
    assert len(stores[0].list("who/")) == len(stores)


def test_s3_bucket_made_here_aborts_stale_multipart_uploads(s3_server, s3_bucket):
    store = make_s3(s3_server, s3_bucket)
    store.ensure_bucket()
    rules = store._client.get_bucket_lifecycle(s3_bucket).rules
    assert [(r.rule_id, r.abort_incomplete_multipart_upload.days_after_initiation) for r in rules] == \
        [("abort-incomplete-multipart", 1)]


def test_s3_missing_bucket_without_create(s3_server, s3_bucket):
    store = make_s3(s3_server, s3_bucket, create_bucket=False)
    with pytest.raises(StorageUnavailable, match="does not exist"):
        store.ping()
    with pytest.raises(StorageUnavailable, match="does not exist"):
        store.get_bytes("a/b")


def test_s3_invalid_settings_fail_early(s3_server):
    with pytest.raises(ValueError):
        make_s3(s3_server, "Bad_Bucket")
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


class _BreakingResponse:
    """Wraps a urllib3 response: serves `good` bytes, then the connection "drops"."""

    def __init__(self, resp, good: int) -> None:
        self._resp, self._left = resp, good
        self.headers = resp.headers

    def read(self, amt=None):
        import urllib3

        if self._left <= 0:
            raise urllib3.exceptions.ProtocolError("Connection broken: simulated reset")
        data = self._resp.read(min(amt or self._left, self._left))
        self._left -= len(data)
        return data

    def close(self):
        self._resp.close()

    def release_conn(self):
        self._resp.release_conn()


def test_s3_stream_resumes_after_a_dropped_connection(s3_server, s3_bucket, tmp_path, monkeypatch):
    store = make_s3(s3_server, s3_bucket)
    data = bytes(range(256)) * 64  # 16 KiB
    store.put_bytes("stream/obj", data)
    real_get = store._client.get_object
    calls: list[dict] = []

    def flaky_get(bucket, key, offset=0, **kw):
        calls.append({"offset": offset, **kw})
        resp = real_get(bucket, key, offset=offset, **kw)
        return _BreakingResponse(resp, 5000) if len(calls) < 3 else resp

    monkeypatch.setattr(store._client, "get_object", flaky_get)
    dest = tmp_path / "obj"
    store.get_file("stream/obj", dest)
    assert dest.read_bytes() == data
    assert [c["offset"] for c in calls] == [0, 5000, 10000]  # resumed exactly where it broke
    assert all(c["request_headers"]["If-Match"] for c in calls[1:])  # pinned to one version


def test_s3_failed_download_leaves_destination_untouched(s3_server, s3_bucket, tmp_path, monkeypatch):
    store = make_s3(s3_server, s3_bucket, retry=RetryPolicy(attempts=2, max_seconds=1.0, base_delay=0.01))
    store.put_bytes("stream/obj", b"N" * 50_000)
    dest = tmp_path / "obj"
    dest.write_bytes(b"previous version")
    real_get = store._client.get_object
    monkeypatch.setattr(
        store._client, "get_object", lambda b, k, offset=0, **kw: _BreakingResponse(real_get(b, k, offset=offset, **kw), 1000)
    )
    with pytest.raises(StorageError):
        store.get_file("stream/obj", dest)
    assert dest.read_bytes() == b"previous version"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obj"]


def test_s3_outage_gives_storage_unavailable_within_budget_then_recovers(s3_server, s3_bucket):
    budget = 1.5
    store = make_s3(s3_server, s3_bucket, retry=RetryPolicy(attempts=50, max_seconds=budget, base_delay=0.05, max_delay=0.3))
    store.put_bytes("jobs/j1/record.json", b"{}")
    with s3_server.outage():
        t0 = time.monotonic()
        with pytest.raises(StorageUnavailable) as info:
            store.get_bytes("jobs/j1/record.json")
        elapsed = time.monotonic() - t0
        assert elapsed <= budget + 0.5, f"gave up after {elapsed:.2f} s, budget {budget} s"
        assert elapsed >= 0.2, "did not retry at all"
        assert s3_server.endpoint in str(info.value)
        with pytest.raises(StorageUnavailable, match=s3_server.endpoint.replace(".", r"\.")):
            store.put_bytes("jobs/j1/other", b"x")
        t0 = time.monotonic()
        with pytest.raises(StorageUnavailable):
            store.ping()
        assert time.monotonic() - t0 < 1.0  # one quick try, no retry loop
    # Same port, same data: the same store works again without being rebuilt.
    store.ping()
    assert store.get_bytes("jobs/j1/record.json") == b"{}"
    store.put_bytes("jobs/j1/other", b"x")
    assert [o.key for o in store.list("jobs/j1/")] == ["jobs/j1/other", "jobs/j1/record.json"]


def test_s3_retries_ride_out_a_short_outage(s3_server, s3_bucket):
    store = make_s3(s3_server, s3_bucket, retry=RetryPolicy(attempts=50, max_seconds=8.0, base_delay=0.05, max_delay=0.3))
    store.put_bytes("jobs/j2/a", b"still here")
    s3_server.stop()
    timer = threading.Timer(0.6, s3_server.start)
    timer.start()
    try:
        t0 = time.monotonic()
        assert store.get_bytes("jobs/j2/a") == b"still here"
        assert time.monotonic() - t0 >= 0.4  # it really waited for the server
    finally:
        timer.join()
        s3_server.start()  # no-op when the timer already did it


def test_s3_unreachable_endpoint_names_it(tmp_path):
    from tests.servers import free_port

    endpoint = f"127.0.0.1:{free_port()}"  # nothing listens there
    store = S3Store(endpoint, "k", "s", "diggan", retry=RetryPolicy(attempts=3, max_seconds=0.5, base_delay=0.01))
    with pytest.raises(StorageUnavailable, match=endpoint):
        store.exists("a/b")
    with pytest.raises(StorageUnavailable, match=endpoint):
        store.ping()


def test_s3_black_holed_endpoint_stays_within_budget():
    """Connects that hang (SYNs dropped) are cut to the retry budget, not connect_timeout."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepted: once the backlog is full, new connects hang
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        store = S3Store(
            f"127.0.0.1:{port}", "k", "s", "diggan",
            retry=RetryPolicy(attempts=10, max_seconds=0.8, base_delay=0.05),
            connect_timeout=10.0, ping_timeout=0.3,
        )
        t0 = time.monotonic()
        with pytest.raises(StorageUnavailable, match=f"127.0.0.1:{port}"):
            store.get_bytes("a/b")
        assert time.monotonic() - t0 < 0.8 + 0.7
        t0 = time.monotonic()
        with pytest.raises(StorageUnavailable):
            store.ping()
        assert time.monotonic() - t0 < 1.0
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_local_store_presign_is_none(tmp_path):
    store = LocalStore(tmp_path)
    store.put_bytes("a/b", b"1")
    assert store.presigned_get_url("a/b") is None


def test_s3_store_repr_and_scheme_endpoint(s3_server, s3_bucket):
    store = S3Store(f"http://{s3_server.endpoint}", "k", "s", s3_bucket, region="us-east-1", retry=FAST_RETRY)
    assert store.endpoint == s3_server.endpoint and not store.secure
    assert repr(store) == f"S3Store(http://{s3_server.endpoint}/{s3_bucket})"
    store.put_bytes("x/y", b"1")
    assert store.get_bytes("x/y") == b"1"


def test_s3_store_works_in_a_forked_child(s3_server, s3_bucket):
    """Celery's prefork pool forks after the store exists: the child gets fresh connections."""
    import multiprocessing

    store = make_s3(s3_server, s3_bucket)
    store.put_bytes("fork/parent", b"p")  # the parent now has a pooled keep-alive connection
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()

    def child() -> None:
        # moto serves from a thread of the parent process, which the child does not have;
        # what matters is that the child does not reuse the parent's pooled sockets.
        q.put((len(store._http.pools), store._bucket_lock.locked()))

    p = ctx.Process(target=child)
    p.start()
    p.join(20)
    assert p.exitcode == 0
    assert q.get(timeout=5) == (0, False)
    assert store.get_bytes("fork/parent") == b"p"  # the parent's pool is untouched
