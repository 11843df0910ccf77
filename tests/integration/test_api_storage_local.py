"""LocalStore guarantees the API relies on: atomic writes, key validation, disk full is clean."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from service.core.storage import InvalidKey, LocalStore, ObjectNotFound, StorageFull


def test_roundtrip_list_prefix_and_delete(tmp_path):
    s = LocalStore(tmp_path / "store")
    s.put_bytes("a/b/one.json", b"1")
    s.put_bytes("a/b/two.json", b"22")
    s.put_bytes("a/bc/three", b"333")
    assert [o.key for o in s.list("a/b/")] == ["a/b/one.json", "a/b/two.json"]
    assert [o.key for o in s.list("a/b")] == ["a/b/one.json", "a/b/two.json", "a/bc/three"]
    assert s.size("a/bc/three") == 3 and s.exists("a/b/one.json")
    assert b"".join(s.iter_bytes("a/b/two.json", chunk_size=1)) == b"22"
    s.get_file("a/b/two.json", tmp_path / "out" / "x")
    assert (tmp_path / "out" / "x").read_bytes() == b"22"
    s.delete_prefix("a/b/")
    assert [o.key for o in s.list("")] == ["a/bc/three"]
    with pytest.raises(ObjectNotFound):
        s.get_bytes("a/b/one.json")
    with pytest.raises(ObjectNotFound):
        s.iter_bytes("nope")
    assert s.presigned_get_url("a/bc/three") is None
    s.ping()


@pytest.mark.parametrize("key", ["../x", "/abs", "a/../../b", "a//b", "a\\b", "", "a/./b", "sp ace"])
def test_bad_keys_rejected(tmp_path, key):
    with pytest.raises(InvalidKey):
        LocalStore(tmp_path).put_bytes(key, b"x")


def test_disk_full_is_a_clear_error_and_changes_nothing(tmp_path, monkeypatch):
    s = LocalStore(tmp_path)
    s.put_bytes("jobs/record.json", b"old")

    def enospc(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", enospc)  # where a full disk surfaces for buffered writes
    with pytest.raises(StorageFull, match="no space left"):
        s.put_bytes("jobs/record.json", b"new, longer")
    monkeypatch.undo()
    assert s.get_bytes("jobs/record.json") == b"old"  # the old object is intact
    assert sorted(os.listdir(tmp_path / "jobs")) == ["record.json"]  # and no temp file is left


def test_up_refuses_public_host_without_keys(tmp_path):
    r = subprocess.run([sys.executable, "-m", "service", "up", "--host", "0.0.0.0", "--data-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=120,
                       env={k: v for k, v in os.environ.items() if not k.startswith("DIGGAN_")})
    assert r.returncode == 2 and "refusing to listen on 0.0.0.0" in r.stderr and "DIGGAN_AUTH_REQUIRED" in r.stderr
