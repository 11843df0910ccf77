"""gan_core.data: conversions, hostile uploads, prepared sets, batches, synthetic data."""

from __future__ import annotations

import bz2
import io
import json
import stat
import struct
import time
import tracemalloc
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from gan_core.data import (
    BatchSampler,
    DatasetError,
    PreparedDataset,
    UploadLimits,
    choose_resolution,
    iterate_batches,
    load_prepared,
    make_synthetic_dataset,
    prepare_dataset,
    resize_images,
    save_prepared,
)

# ---------------------------------------------------------------------------- builders


def encode(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def solid(color: tuple[int, int, int] = (200, 40, 40), size: tuple[int, int] = (32, 32), fmt: str = "PNG") -> bytes:
    return encode(Image.new("RGB", size, color), fmt)


def noise(size: tuple[int, int] = (48, 48), seed: int = 0, fmt: str = "PNG") -> bytes:
    a = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return encode(Image.fromarray(a), fmt)


def make_zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name" when a test wants one
        with zipfile.ZipFile(buf, "w", method) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return buf.getvalue()


def raw_zip(members: list[dict[str, Any]]) -> bytes:
    """A zip written by hand, so tests can lie in headers, set flags and use raw name bytes.
    Member keys: name (bytes), data (already compressed), method, crc, size, csize, flags, attr."""
    out, central = bytearray(), bytearray()
    for m in members:
        name, data, method = m["name"], m["data"], m.get("method", 0)
        crc = m.get("crc", zlib.crc32(data))
        size, csize = m.get("size", len(data)), m.get("csize", len(data))
        flags, attr, off = m.get("flags", 0), m.get("attr", 0), len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, method, 0, 0x21, crc, csize, size, len(name), 0) + name + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x031E, 20, flags, method, 0, 0x21, crc, csize, size,
                               len(name), 0, 0, 0, 0, attr, off) + name
    cd_off = len(out)
    out += central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), cd_off, 0)
    return bytes(out)


def deflated_zeros(mib: int) -> tuple[bytes, int]:
    """Raw deflate stream + CRC of `mib` MiB of zeros, built without ever holding them:
    a full-flushed 1 MiB block is self-contained, so it can be repeated."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 20)
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    return block * mib + c.flush(), crc


def bomb_member(name: bytes, mib: int, **over: Any) -> dict[str, Any]:
    data, crc = deflated_zeros(mib)
    return {"name": name, "data": data, "method": 8, "crc": crc, "size": mib << 20, **over}


def png_header_only(w: int, h: int) -> bytes:
    """A valid PNG signature + IHDR declaring w x h, with almost no pixel data."""
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def frames(fmt: str, **kw: Any) -> bytes:
    fr = [Image.new("RGB", (16, 16), (60 * i, 0, 0)) for i in range(3)]
    return encode(fr[0], fmt, save_all=True, append_images=fr[1:], **kw)


def pixel(ds: PreparedDataset, i: int = 0, y: int | None = None, x: int | None = None) -> np.ndarray:
    r = ds.resolution
    return ds.images[i, :, r // 2 if y is None else y, r // 2 if x is None else x].numpy().astype(int)


def palette_image(index: int) -> Image.Image:
    img = Image.new("P", (32, 32), index)
    img.putpalette([0, 0, 0, 10, 20, 30, 40, 50, 60, 200, 100, 50] + [0] * (256 * 3 - 12))
    return img


# ---------------------------------------------------------------------------- conversions

CONVERSIONS: list[tuple[str, Callable[[], bytes], tuple[int, int, int], str | None]] = [
    # (file name, bytes, expected centre pixel (+-6), substring of the conversion warning or None)
    ("rgba.png", lambda: encode(Image.new("RGBA", (32, 32), (255, 0, 0, 128)), "PNG"), (255, 127, 127), "RGBA (composited on white)"),
    ("la.png", lambda: encode(Image.new("LA", (32, 32), (0, 0)), "PNG"), (255, 255, 255), "grayscale+alpha"),
    ("gray.png", lambda: encode(Image.new("L", (32, 32), 100), "PNG"), (100, 100, 100), "grayscale"),
    ("bw.bmp", lambda: encode(Image.new("1", (32, 32), 1), "BMP"), (255, 255, 255), "grayscale"),
    ("pal.png", lambda: encode(palette_image(3), "PNG"), (200, 100, 50), "palette"),
    ("pal_trns.png", lambda: encode(palette_image(3), "PNG", transparency=3), (255, 255, 255), "palette+transparency"),
    ("pal_trns.gif", lambda: encode(palette_image(3), "GIF", transparency=3), (255, 255, 255), "palette+transparency"),
    ("cmyk.jpg", lambda: encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95), (255, 0, 0), "CMYK"),
    ("deep.png", lambda: encode(Image.fromarray(np.full((32, 32), 32768, np.uint16)), "PNG"), (128, 128, 128), "16-bit grayscale"),
    ("int32.tif", lambda: encode(Image.fromarray(np.full((32, 32), 16384, np.int32)), "TIFF"), (64, 64, 64), "16-bit grayscale"),
    ("lossless.webp", lambda: encode(Image.new("RGB", (32, 32), (10, 200, 30)), "WEBP", lossless=True), (10, 200, 30), None),
    ("PHOTO.JPG", lambda: encode(Image.new("RGB", (32, 32), (10, 200, 30)), "JPEG", quality=95), (10, 200, 30), None),
    # Phone JPEGs are often MPO (a second, preview frame): not an animation, the first frame is used.
    ("phone.jpg", lambda: encode(Image.new("RGB", (32, 32), (10, 200, 30)), "MPO", save_all=True,
                                 append_images=[Image.new("RGB", (32, 32))]), (10, 200, 30), None),
    ("plain.bmp", lambda: encode(Image.new("RGB", (32, 32), (1, 2, 3)), "BMP"), (1, 2, 3), None),
    ("plain.tiff", lambda: encode(Image.new("RGB", (32, 32), (9, 8, 7)), "TIFF"), (9, 8, 7), None),
]


@pytest.mark.parametrize("name,build,expected,conversion", CONVERSIONS, ids=[c[0] for c in CONVERSIONS])
def test_conversions(name: str, build: Callable[[], bytes], expected: tuple[int, int, int], conversion: str | None) -> None:
    ds = prepare_dataset([(name, build())], resolution=32)
    assert ds.images.dtype == torch.uint8 and tuple(ds.images.shape) == (1, 3, 32, 32)
    assert ds.names == [name]
    assert np.abs(pixel(ds) - np.array(expected)).max() <= 6, pixel(ds)
    converted = [w for w in ds.warnings if w.startswith("Converted")]
    if conversion is None:
        assert not converted
    else:
        assert converted and conversion in converted[0] and name in converted[0]


def test_exif_orientation_is_applied() -> None:
    # Stored 64x32: left half red, right half blue. Orientation 6 = rotate 90 CW to display,
    # so the displayed image is 32x64 with red on top. Padding keeps the whole picture.
    a = np.zeros((32, 64, 3), np.uint8)
    a[:, :32] = (255, 0, 0)
    a[:, 32:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(a), "JPEG", quality=95, exif=exif.tobytes())
    ds = prepare_dataset([("rotated.jpg", data)], resolution=64, fit="pad")
    top, bottom, bar = pixel(ds, y=8, x=32), pixel(ds, y=56, x=32), pixel(ds, y=32, x=4)
    assert top[0] > 200 and top[2] < 50, top  # red on top
    assert bottom[2] > 200 and bottom[0] < 50, bottom  # blue below
    assert bar.max() < 10, bar  # black bars left/right: the image is now tall


def test_fit_crop_and_pad() -> None:
    a = np.zeros((64, 128, 3), np.uint8)
    a[:, :64] = (255, 0, 0)
    a[:, 64:] = (0, 0, 255)
    data = [("wide.png", encode(Image.fromarray(a), "PNG"))]
    crop = prepare_dataset(data, resolution=64, fit="crop")
    assert pixel(crop, y=32, x=10)[0] > 200 and pixel(crop, y=32, x=54)[2] > 200  # centre 64x64 of the 128x64
    assert any("centre-cropped" in w for w in crop.warnings)
    pad = prepare_dataset(data, resolution=64, fit="pad")
    assert pixel(pad, y=4, x=32).max() == 0  # black bar above
    assert pixel(pad, y=32, x=10)[0] > 200 and pixel(pad, y=32, x=54)[2] > 200
    assert any("padded" in w for w in pad.warnings)


@pytest.mark.parametrize(
    "sides,expected",
    [([256] * 5, 256), ([100, 300, 64], 64), ([10, 12], 32), ([5000, 4000, 3000], 1024), ([511], 256), ([512], 512)],
)
def test_choose_resolution(sides: list[int], expected: int) -> None:
    assert choose_resolution(sides) == expected


def test_auto_resolution_mixed_sizes_and_upscale_warnings() -> None:
    files = [("a.png", noise((64, 64), 1)), ("b.png", noise((96, 80), 2)), ("c.png", noise((200, 150), 3))]
    ds = prepare_dataset(files)  # median shorter side 80 -> 64
    assert ds.resolution == 64 and len(ds) == 3
    text = " | ".join(ds.warnings)
    assert "3 different sizes" in text and "non-square" in text and "b.png" in text
    up = prepare_dataset(files, resolution=128)
    assert any("upscaled" in w and "a.png" in w for w in up.warnings)


def test_duplicates_are_kept_with_a_warning() -> None:
    img = noise((32, 32), 7)
    ds = prepare_dataset([("one.png", img), ("two.png", img), ("three.png", noise((32, 32), 8))])
    assert len(ds) == 3
    assert any("duplicate" in w and "two.png = one.png" in w for w in ds.warnings)


def test_junk_files_in_zip_are_skipped_with_counts() -> None:
    z = make_zip([
        ("photos/", b""),
        ("photos/a.png", noise(seed=1)),
        ("photos/sub/B.JPG", noise(seed=2, fmt="JPEG")),
        ("__MACOSX/photos/._a.png", b"\0\5\26\7 AppleDouble junk"),
        ("photos/.DS_Store", b"\0\0\0\1Bud1"),
        ("photos/Thumbs.db", b"junk"),
        ("photos/.hidden.png", b"not even a png"),
        ("photos/readme.txt", b"hello"),
    ])
    ds = prepare_dataset(z)
    assert ds.names == ["photos/a.png", "photos/sub/B.JPG"]
    text = " | ".join(ds.warnings)
    assert "Skipped 4 hidden/system" in text and "Skipped 1 non-image" in text and "readme.txt" in text


def test_folder_source_skips_hidden_folders_and_junk(tmp_path: Path) -> None:
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    (tmp_path / ".git" / "objects" / "x.png").write_bytes(b"not an image")
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "__MACOSX" / "._a.png").write_bytes(b"junk")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "img10.png").write_bytes(noise(seed=1))
    (tmp_path / "sub" / "img2.png").write_bytes(noise(seed=2))
    (tmp_path / "Thumbs.db").write_bytes(b"junk")
    ds = prepare_dataset(tmp_path)
    assert ds.names == ["sub/img2.png", "sub/img10.png"]  # natural order
    assert any("Skipped 3 hidden/system" in w for w in ds.warnings)
    (tmp_path / "sub" / "more.zip").write_bytes(make_zip([("x.png", solid())]))
    with pytest.raises(DatasetError, match="more.zip: archive inside"):
        prepare_dataset(tmp_path)


def test_odd_but_harmless_names() -> None:
    # cp437 (no UTF-8 flag) decodes to something; spaces of any kind, emoji (a ZWJ-free one) and
    # private-use characters are real file names and are kept.
    names = ["no\u00a0break.png", "全角\u3000space.png", "smile\U0001f600.png", "apple\uf8ff.png"]
    z = raw_zip([{"name": b"caf\xe9.png", "data": solid()},
                 *({"name": n.encode(), "data": solid((i, 2, 3)), "flags": 0x800} for i, n in enumerate(names))])
    ds = prepare_dataset(z)
    assert len(ds) == 5 and "cafΘ.png" in ds.names and "smile\U0001f600.png" in ds.names
    assert "no\\xa0break.png" in ds.names  # kept, and shown escaped (display_name) where not printable


def test_upload_list_sources() -> None:
    ds = prepare_dataset([("image.jpg", noise(seed=1, fmt="JPEG")), ("image.jpg", noise(seed=2, fmt="JPEG"))])
    assert ds.names == ["image.jpg", "image (2).jpg"] and any("renamed" in w for w in ds.warnings)
    single_zip = prepare_dataset([("upload.zip", make_zip([("x.png", solid())]))])
    assert single_zip.names == ["x.png"]


def test_class_folders_from_zip_with_wrapper_folder() -> None:
    z = make_zip([(f"mydata/{c}/{i}.png", noise(seed=10 * k + i)) for k, c in enumerate(["dogs", "cats"]) for i in range(2)])
    ds = prepare_dataset(z, class_folders=True)
    assert ds.class_names == ["cats", "dogs"]
    assert dict(zip(ds.names, ds.labels or [])) == {
        "mydata/cats/0.png": 0, "mydata/cats/1.png": 0, "mydata/dogs/0.png": 1, "mydata/dogs/1.png": 1}
    plain = prepare_dataset(z)
    assert plain.labels is None and plain.class_names is None


# ---------------------------------------------------------------------------- errors


def _zip_with(name: str, data: bytes) -> bytes:
    return make_zip([("ok.png", solid()), (name, data)])


def _member(name: bytes, data: bytes, **kw: Any) -> bytes:
    return raw_zip([{"name": b"ok.png", "data": solid()}, {"name": name, "data": data, **kw}])


def _bzip2_member(name: bytes) -> bytes:
    plain = solid()
    packed = bz2.compress(plain)
    return _member(name, packed, method=12, crc=zlib.crc32(plain), size=len(plain), csize=len(packed))


def _truncated_jpeg() -> bytes:
    data = noise((64, 64), fmt="JPEG")
    return data[: len(data) // 2]


ERRORS: list[tuple[str, Callable[[], Any], dict[str, Any], list[str]]] = [
    # (id, source, prepare_dataset kwargs, substrings the message must contain)
    ("traversal", lambda: _member(b"../evil.png", solid()), {}, ["../evil.png", "outside the archive"]),
    ("traversal-deep", lambda: _member(b"a/../../evil.png", solid()), {}, ["a/../../evil.png", "outside"]),
    ("absolute", lambda: _member(b"/etc/evil.png", solid()), {}, ["/etc/evil.png", "absolute"]),
    ("drive-letter", lambda: _member(b"C:/evil.png", solid()), {}, ["C:/evil.png", "absolute"]),
    ("backslash", lambda: _member(b"dir\\evil.png", solid()), {}, ["evil.png", "backslash"]),
    ("list-traversal", lambda: [("../x.png", solid())], {}, ["../x.png", "outside"]),
    # Control and invisible formatting characters are refused like traversal (shown escaped).
    ("control-esc", lambda: _member(b"evil\x1b[31m.png", solid()), {}, ["evil\\x1b[31m.png", "control character \\x1b"]),
    ("control-newline", lambda: _member(b"a\nb.png", solid()), {}, ["a\\nb.png", "control character"]),
    ("control-del", lambda: _member(b"x\x7f.png", solid()), {}, ["x\\x7f.png", "control character"]),
    ("control-c1", lambda: _member("x\x85.png".encode(), solid(), flags=0x800), {}, ["control character \\x85"]),
    ("control-bidi", lambda: _member("photo\u202egnp.exe.png".encode(), solid(), flags=0x800), {},
     ["photo\\u202egnp.exe.png", "invisible formatting character"]),
    ("control-zero-width", lambda: _member("a\u200bb.png".encode(), solid(), flags=0x800), {}, ["\\u200b", "invisible"]),
    ("control-line-sep", lambda: _member("a\u2028b.png".encode(), solid(), flags=0x800), {}, ["line separator"]),
    ("list-control", lambda: [("ok.png", solid()), ("bad\x1b.png", solid())], {}, ["bad\\x1b.png", "control character"]),
    ("symlink", lambda: _member(b"link.png", b"/etc/passwd", attr=(stat.S_IFLNK | 0o777) << 16), {}, ["link.png", "symbolic link"]),
    ("nested-zip", lambda: _zip_with("more/inner.zip", make_zip([("x.png", solid())])), {}, ["inner.zip", "archive inside"]),
    ("nested-tgz", lambda: _zip_with("inner.tar.gz", b"\x1f\x8b" + b"\0" * 20), {}, ["inner.tar.gz", "Nested archives"]),
    ("encrypted", lambda: _member(b"secret.png", solid(), flags=0x1), {}, ["secret.png", "password"]),
    ("bzip2", lambda: _bzip2_member(b"b.png"), {}, ["b.png", "unsupported method", "deflate"]),
    ("duplicate-entry", lambda: make_zip([("a.png", solid()), ("a.png", solid((1, 1, 1)))]), {}, ["a.png", "twice"]),
    ("long-name", lambda: _zip_with("x" * 300 + ".png", solid()), {}, ["304 characters", "Rename"]),
    ("huge-name", lambda: _zip_with("y" * 20000 + ".png", solid()), {}, ["20004 characters"]),
    ("non-utf8-flagged", lambda: _member(b"caf\xff.png", solid(), flags=0x800), {}, ["UTF-8"]),
    ("not-a-zip", lambda: b"PK\x03\x04 this is not really a zip", {}, ["not a valid zip"]),
    ("empty-zip", lambda: make_zip([]), {}, ["no images found"]),
    ("only-junk", lambda: make_zip([("__MACOSX/._a.png", b"x"), (".DS_Store", b"x"), ("notes.txt", b"x")]), {}, ["no images found", "3 other files skipped"]),
    ("too-few", lambda: make_zip([("a.png", solid()), ("b.png", noise())]), {"min_images": 3}, ["only 2 usable", "at least 3"]),
    ("empty-file", lambda: _zip_with("blank.png", b""), {}, ["blank.png", "0 bytes"]),
    ("text-as-png", lambda: _zip_with("notes.png", b"Shopping list:\n- eggs\n- milk\n"), {}, ["notes.png", "text file"]),
    ("html-as-jpg", lambda: _zip_with("page.jpg", b"<!DOCTYPE html><html><body>404</body></html>"), {}, ["page.jpg", "text file"]),
    ("git-lfs-pointer", lambda: _zip_with("face.jpg", b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n"), {}, ["face.jpg", "git lfs pull"]),
    ("binary-garbage", lambda: _zip_with("noise.png", bytes(range(256)) * 4), {}, ["noise.png", "not a recognisable image"]),
    ("jpeg-named-png", lambda: _zip_with("liar.png", noise(fmt="JPEG")), {}, ["liar.png", "really a JPEG", "liar.jpg"]),
    ("truncated-jpeg", lambda: _zip_with("cut.jpg", _truncated_jpeg()), {}, ["cut.jpg", "truncated"]),
    ("truncated-png", lambda: _zip_with("cut.png", noise((64, 64))[:1500]), {}, ["cut.png", "truncated"]),
    ("animated-gif", lambda: _zip_with("anim.gif", frames("GIF")), {}, ["anim.gif", "animated GIF", "still images"]),
    ("apng", lambda: _zip_with("anim.png", frames("PNG")), {}, ["anim.png", "animated PNG"]),
    ("animated-webp", lambda: _zip_with("anim.webp", frames("WEBP")), {}, ["anim.webp", "animated WEBP"]),
    ("multipage-tiff", lambda: _zip_with("pages.tif", frames("TIFF")), {}, ["pages.tif", "multi-page TIFF"]),
    ("bomb-png-huge", lambda: _zip_with("bomb.png", png_header_only(50_000, 50_000)), {}, ["bomb.png", "too large", "megapixels"]),
    ("bomb-png-81mp", lambda: _zip_with("big.png", png_header_only(9000, 9000)), {}, ["big.png", "81.0 megapixels"]),
    ("pixel-limit", lambda: [("a.png", solid((1, 2, 3), (40, 40)))], {"limits": UploadLimits(max_pixels=1000)}, ["a.png", "40x40", "too large"]),
    ("float-tiff", lambda: [("f.tif", encode(Image.fromarray(np.ones((8, 8), np.float32)), "TIFF"))], {}, ["f.tif", "floating-point"]),
    ("heic", lambda: [("IMG_0001.HEIC", b"\0\0\0\x18ftypheic")], {}, ["IMG_0001.HEIC", "not supported", "JPEG"]),
    ("too-many-entries", lambda: make_zip([(f"d{i}/", b"") for i in range(10)]), {"limits": UploadLimits(max_entries=5)}, ["10 entries", "limit of 5"]),
    ("too-many-files", lambda: make_zip([(f"{i}.png", solid()) for i in range(4)]), {"limits": UploadLimits(max_files=3)}, ["4 images", "limit of 3"]),
    ("file-too-big", lambda: make_zip([("big.png", noise((64, 64)))]), {"limits": UploadLimits(max_file_uncompressed=4000)}, ["big.png", "per-file limit"]),
    ("total-too-big", lambda: make_zip([(f"{i}.png", noise((40, 40), i)) for i in range(5)]), {"limits": UploadLimits(max_total_uncompressed=10_000)}, ["larger than", "uncompressed"]),
    ("class-loose-file", lambda: make_zip([("cats/a.png", solid()), ("b.png", solid())]), {"class_folders": True}, ["b.png", "class folder"]),
    ("missing-path", lambda: "/nonexistent/dir/for/sure", {}, ["no such file"]),
    ("bad-resolution", lambda: [("a.png", solid())], {"resolution": 100}, ["power of two"]),
    ("bad-fit", lambda: [("a.png", solid())], {"fit": "stretch"}, ["fit must be"]),
]


@pytest.mark.parametrize("case_id,source,kwargs,expected", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors(case_id: str, source: Callable[[], Any], kwargs: dict[str, Any], expected: list[str]) -> None:
    with pytest.raises(DatasetError) as info:
        prepare_dataset(source(), **kwargs)
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    for s in expected:
        assert s.lower() in msg.lower(), f"{s!r} not in {msg!r}"


def test_several_bad_files_are_reported_together() -> None:
    z = make_zip([("ok.png", solid()), ("empty.png", b""), ("text.jpg", b"hello"), ("cut.jpg", _truncated_jpeg())])
    with pytest.raises(DatasetError) as info:
        prepare_dataset(z)
    assert len(info.value.problems) == 3
    for name in ("empty.png", "text.jpg", "cut.jpg"):
        assert name in str(info.value)


# ---------------------------------------------------------------------------- zip bombs

BOMBS: list[tuple[str, Callable[[], bytes], list[str]]] = [
    # 300 MiB of zeros in one member: refused from the header, nothing decompressed.
    ("honest-300MiB", lambda: raw_zip([{"name": b"ok.png", "data": solid()}, bomb_member(b"bomb.png", 300)]), ["bomb.png", "300 MiB", "per-file limit"]),
    # 60 MiB (under the per-file limit) but 1000:1: refused by the declared ratio.
    ("ratio-60MiB", lambda: raw_zip([bomb_member(b"bomb.png", 60)]), ["bomb.png", "zip bomb"]),
    # Header lies about the compressed size (50 MiB) so the declared ratio looks fine:
    # zipfile runs out of input after the first chunk and the entry is refused as damaged.
    ("lying-csize", lambda: raw_zip([bomb_member(b"bomb.png", 60, csize=50 << 20)]), ["bomb.png", "damaged"]),
    # Header claims 1000 bytes: zipfile stops there and the CRC check fails.
    ("lying-size", lambda: raw_zip([bomb_member(b"bomb.png", 300, size=1000)]), ["bomb.png", "damaged"]),
    # Many members, each small enough to pass alone: the whole-archive ratio, counted while
    # streaming, stops them after ~20 MiB.
    ("many-small", lambda: raw_zip([bomb_member(f"{i}.png".encode(), 1) for i in range(100)]), ["zip bomb"]),
]


@pytest.mark.parametrize("case_id,build,expected", BOMBS, ids=[b[0] for b in BOMBS])
def test_zip_bombs_rejected_quickly_without_allocating(case_id: str, build: Callable[[], bytes], expected: list[str]) -> None:
    data = build()
    assert len(data) < 2 << 20  # the bomb itself is small
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(DatasetError) as info:
            prepare_dataset(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 5.0
    assert peak < 64 << 20, f"peak {peak / 2**20:.0f} MiB"
    for s in expected:
        assert s in str(info.value), str(info.value)


def test_limits_validate() -> None:
    with pytest.raises(ValueError):
        UploadLimits(max_files=0)
    d = UploadLimits()
    assert (d.max_files, d.max_total_uncompressed, d.max_file_uncompressed) == (5000, 2 << 30, 64 << 20)
    assert (d.max_compression_ratio, d.max_pixels, d.max_name_length) == (200, 64_000_000, 255)
    assert d.max_total_pixels >= 1.5 * 5000 * 1024 * 1024  # max_files images of 1024x1024, with room


# ---------------------------------------------------------------------------- decode budgets


class Budget:
    """A decode_budget that records what it was charged and whether decoding happened inside it."""

    def __init__(self, refuse: Exception | None = None) -> None:
        self.refuse, self.charged, self.events = refuse, [], []

    def __call__(self, pixels: int):
        self.charged.append(pixels)
        if self.refuse is not None:
            raise self.refuse
        budget = self

        class _Held:
            def __enter__(self) -> None:
                budget.events.append("enter")

            def __exit__(self, exc_type, exc, tb) -> None:
                budget.events.append(f"exit:{exc_type.__name__ if exc_type else None}")

        return _Held()


def _declaring(n: int, w: int, h: int) -> bytes:
    """n real PNG files whose headers declare w x h but carry ~30 bytes of pixel data each:
    decoding any of them fails with "truncated", so that message proves a decode happened."""
    return make_zip([(f"big{i}.png", png_header_only(w, h)) for i in range(n)])


def test_total_declared_pixels_refused_before_any_decode() -> None:
    # The issue's shape, scaled: PNGs of a few dozen bytes that each declare 36 megapixels (under the
    # per-image cap). Four of them declare 144 MP, over a 100 MP upload limit: refused from the headers.
    limits = UploadLimits(max_total_pixels=100_000_000)
    budget = Budget()
    t0 = time.perf_counter()
    with pytest.raises(DatasetError) as info:
        prepare_dataset(_declaring(4, 6000, 6000), limits=limits, decode_budget=budget)
    msg = str(info.value)
    assert "the 4 images declare 144 megapixels in total, over the 100 megapixels limit" in msg, msg
    assert "downscale" in msg and "truncated" not in msg  # nothing was decoded
    assert budget.charged == []  # and nothing was charged
    print(f"\n  4 x 36 MP declared: refused in {time.perf_counter() - t0:.3f} s")
    # Under the limit the same files are decoded (and each fails as truncated, inside the budget).
    with pytest.raises(DatasetError, match="truncated"):
        prepare_dataset(_declaring(2, 6000, 6000), limits=limits, decode_budget=budget)
    assert budget.charged == [72_000_000] and budget.events == ["enter", "exit:None"]


def test_default_total_pixels_stops_the_issue_upload_from_headers() -> None:
    """2,000 PNGs declaring 40 megapixels each (80 gigapixels; ~80,000 bytes of files) against the
    defaults: refused before decoding, where decoding them would hold a worker for an hour."""
    one = png_header_only(8000, 5000)
    t0 = time.perf_counter()
    with pytest.raises(DatasetError, match="the 2000 images declare 80,000 megapixels in total, over the 8,000"):
        prepare_dataset([(f"{i}.png", one) for i in range(2000)])
    print(f"\n  2000 x 40 MP declared: refused in {time.perf_counter() - t0:.2f} s")


def test_decode_budget_is_charged_the_declared_pixels_around_decoding() -> None:
    sizes = [(40, 30), (64, 64), (50, 90)]
    files = [(f"{i}.png", noise(size, seed=i)) for i, size in enumerate(sizes)]
    budget = Budget()
    ds = prepare_dataset(files, decode_budget=budget)
    assert len(ds) == 3 and budget.charged == [sum(w * h for w, h in sizes)]
    assert budget.events == ["enter", "exit:None"]
    # A file that fails to decode fails inside the budget's context, which is still released.
    budget = Budget()
    with pytest.raises(DatasetError, match="truncated"):
        prepare_dataset([*files, ("cut.png", noise((64, 64))[:1500])], decode_budget=budget)
    assert budget.charged == [sum(w * h for w, h in sizes) + 64 * 64] and budget.events == ["enter", "exit:None"]


def test_decode_budget_can_refuse_before_decoding() -> None:
    budget = Budget(refuse=DatasetError("this account is already decoding 3 uploads; try again in a minute"))
    with pytest.raises(DatasetError, match="already decoding"):
        prepare_dataset(_declaring(2, 2000, 2000), decode_budget=budget)  # would fail as truncated if decoded
    assert budget.charged == [8_000_000]


def test_prepared_sets_are_bounded_and_charged_too(tmp_path: Path) -> None:
    ds = prepare_dataset([(f"{i}.png", noise((40, 40), seed=i)) for i in range(3)])
    path = save_prepared(ds, tmp_path / "p.zip")
    budget = Budget()
    again = prepare_dataset(path, decode_budget=budget)
    assert torch.equal(again.images, ds.images) and budget.charged == [3 * 32 * 32] and budget.events[-1] == "exit:None"
    with pytest.raises(DatasetError, match="the 3 images declare"):
        prepare_dataset(path, limits=UploadLimits(max_total_pixels=3000))
    with pytest.raises(DatasetError, match="the 3 images declare"):
        load_prepared(path, limits=UploadLimits(max_total_pixels=3000))


# ---------------------------------------------------------------------------- prepared sets


def test_save_load_roundtrip(tmp_path: Path) -> None:
    src = make_synthetic_dataset(tmp_path / "src", n=9, resolution=48, num_classes=3)
    (src / "notes.txt").write_text("not an image")
    ds = prepare_dataset(src, class_folders=True)
    assert (len(ds), ds.resolution, ds.class_names) == (9, 32, ["class0", "class1", "class2"])
    out = save_prepared(ds, tmp_path / "out" / "prepared.zip")
    assert sorted(p.name for p in out.parent.iterdir()) == ["prepared.zip"]  # no temp file left behind
    with zipfile.ZipFile(out) as zf:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
        assert zf.namelist() == [f"img{i:05d}.png" for i in range(9)] + ["dataset.json"]
        meta = json.loads(zf.read("dataset.json"))
    assert meta["count"] == 9 and meta["resolution"] == 32 and meta["labels"] == ds.labels
    assert meta["names"] == ds.names and meta["warnings"] == ds.warnings and meta["class_names"] == ds.class_names

    for loaded in (load_prepared(out), prepare_dataset(out), prepare_dataset(out.read_bytes()), prepare_dataset(out, class_folders=True)):
        assert torch.equal(loaded.images, ds.images)
        assert (loaded.names, loaded.labels, loaded.class_names, loaded.resolution, loaded.warnings) == (
            ds.names, ds.labels, ds.class_names, ds.resolution, ds.warnings)
    # deterministic bytes
    again = save_prepared(ds, tmp_path / "again.zip")
    assert again.read_bytes() == out.read_bytes()
    # a smaller training resolution from a prepared set
    small = prepare_dataset(out, resolution=16)
    assert tuple(small.images.shape) == (9, 3, 16, 16) and any("downsampled" in w for w in small.warnings)


def test_tampered_prepared_zip_is_rejected(tmp_path: Path) -> None:
    ds = prepare_dataset([("a.png", noise(seed=1)), ("b.png", noise(seed=2))])
    good = save_prepared(ds, tmp_path / "p.zip").read_bytes()
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    bad = make_zip([(n, d) for n, d in members.items() if n != "img00001.png"])
    with pytest.raises(DatasetError, match="does not match its manifest"):
        prepare_dataset(bad)
    with pytest.raises(DatasetError, match="not a prepared dataset"):
        load_prepared(make_zip([("a.png", solid())]))


def test_resize_images_antialiased() -> None:
    checker = (torch.arange(64).view(1, 64) + torch.arange(64).view(64, 1)) % 2 * 255
    x = checker.to(torch.uint8).expand(2, 3, 64, 64).contiguous()
    y = resize_images(x, 16)
    assert y.dtype == torch.uint8 and tuple(y.shape) == (2, 3, 16, 16)
    assert (y.float() - 127.5).abs().max() < 16  # averaged to gray, not aliased to black/white
    assert resize_images(y, 16) is y


# ---------------------------------------------------------------------------- batches


def _take(sampler: BatchSampler, k: int) -> list[tuple[list[int], list[bool]]]:
    return [(i.tolist(), f.tolist()) for i, f in (next(sampler) for _ in range(k))]


def test_batch_sampler_deterministic_epochs() -> None:
    a = BatchSampler(10, 4, torch.Generator().manual_seed(1), mirror=True)
    b = BatchSampler(10, 4, torch.Generator().manual_seed(1), mirror=True)
    assert _take(a, 12) == _take(b, 12)
    c = BatchSampler(10, 5, torch.Generator().manual_seed(3))
    for _ in range(3):  # each epoch is a permutation; batches divide it exactly here
        idx = torch.cat([next(c)[0], next(c)[0]]).tolist()
        assert sorted(idx) == list(range(10))
    assert c.epoch == 2
    assert _take(BatchSampler(10, 4, torch.Generator().manual_seed(2)), 3) != _take(BatchSampler(10, 4, torch.Generator().manual_seed(1)), 3)


def test_batch_sampler_resumes_exactly(tmp_path: Path) -> None:
    a = BatchSampler(7, 3, torch.Generator().manual_seed(5), mirror=True)
    _take(a, 5)  # mid-epoch
    torch.save(a.state_dict(), tmp_path / "s.pt")
    expected = _take(a, 8)
    b = BatchSampler(7, 3, torch.Generator().manual_seed(999), mirror=True)
    b.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert _take(b, 8) == expected
    with pytest.raises(ValueError):
        BatchSampler(8, 3).load_state_dict(a.state_dict())


def test_iterate_batches_range_flips_and_resume() -> None:
    imgs = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    imgs[..., :4] = 255  # left half white: flips are visible
    it = iterate_batches(imgs, 6, torch.Generator().manual_seed(0), mirror=True)
    xs = [next(it) for _ in range(5)]
    assert all(x.dtype == torch.float32 and tuple(x.shape) == (6, 3, 8, 8) for x in xs)
    allx = torch.cat(xs)
    assert allx.min() == -1 and allx.max() == 1
    flipped = allx[:, 0, 0, 0] < 0
    assert 0 < flipped.sum() < len(allx)
    # resuming through a sampler reproduces the stream
    s1 = BatchSampler(4, 6, torch.Generator().manual_seed(0), mirror=True)
    it1 = iterate_batches(imgs, 6, sampler=s1)
    [next(it1) for _ in range(2)]
    s2 = BatchSampler(4, 6, mirror=True)
    s2.load_state_dict(s1.state_dict())
    it2 = iterate_batches(imgs, 6, sampler=s2)
    for _ in range(3):
        assert torch.equal(next(it1), next(it2))
    no_mirror = next(iterate_batches(imgs, 6, torch.Generator().manual_seed(0)))
    assert (no_mirror[:, 0, 0, 0] == 1).all()


# ---------------------------------------------------------------------------- synthetic + shared data


def test_make_synthetic_dataset(tmp_path: Path) -> None:
    a = make_synthetic_dataset(tmp_path / "a", n=6, resolution=32, seed=3)
    b = make_synthetic_dataset(tmp_path / "b", n=6, resolution=32, seed=3)
    files = sorted(p.name for p in a.iterdir())
    assert files == [f"img{i:03d}.png" for i in range(6)]
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    c = make_synthetic_dataset(tmp_path / "c", n=6, resolution=32, num_classes=2)
    assert sorted(p.name for p in c.iterdir()) == ["class0", "class1"]
    ds = prepare_dataset(c, class_folders=True)
    assert ds.resolution == 32 and ds.labels == [0, 0, 0, 1, 1, 1] and not ds.warnings


@pytest.mark.needs_shared
def test_prepare_100_shot_obama(shared_datasets: Path) -> None:
    t0 = time.perf_counter()
    ds = prepare_dataset(shared_datasets / "100-shot-obama", min_images=100)
    elapsed = time.perf_counter() - t0
    assert len(ds) == 100 and ds.resolution == 256 and tuple(ds.images.shape) == (100, 3, 256, 256)
    assert ds.labels is None and not ds.warnings, ds.warnings
    assert ds.images.float().std() > 30  # real pictures, not blank
    assert elapsed < 20, f"{elapsed:.1f} s"
