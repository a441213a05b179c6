"""Tests for funcbp.data. Nothing here touches the internet: downloads hit a local server."""

import functools
import gzip
import hashlib
import http.server
import os
import socket
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from funcbp import data
from funcbp.data import (
    DataError,
    build_mnist_5k,
    download_mnist,
    load_mnist,
    mnist_dir,
    read_idx,
)

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
LABELS = np.array([0, 1, 2, 9, 4, 5, 9], dtype=np.uint8)


def idx_bytes(array: np.ndarray) -> bytes:
    magic = 2051 if array.ndim == 3 else 2049
    return struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.tobytes()


def write_mnist_folder(folder: Path, n_train: int = 7, n_test: int = 3) -> dict[str, bytes]:
    """Write the four MNIST files (small, gzipped) and return their bytes by name."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = [IMAGES[:n_train], LABELS[:n_train], IMAGES[:n_test], LABELS[:n_test]]
    files = {}
    for name, array in zip(data.MNIST_MD5, arrays, strict=True):
        files[name] = gzip.compress(idx_bytes(array), mtime=0)
        (folder / name).write_bytes(files[name])
    return files


# IDX reader


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("array", [IMAGES, LABELS], ids=["images", "labels"])
def test_read_idx_round_trip(tmp_path, gz, array):
    raw = idx_bytes(array)
    path = tmp_path / ("f.idx.gz" if gz else "f.idx")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    out = read_idx(path)
    assert out.dtype == np.uint8
    assert out.shape == array.shape
    np.testing.assert_array_equal(out, array)
    out[0] = 1  # a writable copy, not a view of the file's bytes


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (struct.pack(">II", 2050, 3) + bytes(3), "expected magic 2051 .* found 2050"),
        (idx_bytes(LABELS)[:-1], "expects 7 data bytes, found 6"),
        (idx_bytes(IMAGES) + b"\0", rf"expects {7 * 28 * 28} data bytes, found {7 * 28 * 28 + 1}"),
        (idx_bytes(LABELS)[:6], "8-byte IDX header at least, found 6"),
        (idx_bytes(IMAGES)[:12], "16-byte image header, found 12"),
    ],
    ids=["wrong-magic", "truncated-data", "extra-data", "truncated-header", "truncated-img-header"],
)
def test_read_idx_rejects_bad_files(tmp_path, raw, match):
    path = tmp_path / "bad.idx"
    path.write_bytes(raw)
    with pytest.raises(DataError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "content",
    [idx_bytes(LABELS), gzip.compress(idx_bytes(IMAGES))[:-40], b"\x1f\x8b\x08garbage"],
    ids=["not-gzip", "truncated-gzip", "corrupt-gzip"],
)
def test_read_idx_rejects_bad_gzip(tmp_path, content):
    path = tmp_path / "bad.gz"
    path.write_bytes(content)
    with pytest.raises(DataError, match="expected a gzip file") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def _huge_header(raw: bytes = b"") -> bytes:
    """An image header of (2**31, 2**31, 4): 2**64 bytes, which wraps to 0 in int64."""
    return struct.pack(">IIII", 2051, 1 << 31, 1 << 31, 4) + raw


@pytest.mark.parametrize("gz", [False, True])
def test_a_header_of_2_to_the_64_bytes_is_refused_without_wraparound(tmp_path, monkeypatch, gz):
    path = tmp_path / ("huge.gz" if gz else "huge")
    path.write_bytes(gzip.compress(_huge_header()) if gz else _huge_header())
    monkeypatch.setattr(data, "read_into", lambda *a: pytest.fail("data read before the check"))
    with pytest.raises(DataError) as info:
        read_idx(path)
    dims = "(2147483648, 2147483648, 4)"
    if gz:
        expected = (
            f"{path}: header {dims} declares 18,446,744,073,709,551,616 data bytes, more than "
            "the 268,435,456 an IDX file may hold here"
        )
    else:
        expected = f"{path}: header {dims} expects 18446744073709551616 data bytes, found 0"
    assert str(info.value) == expected


class _CountingGzip(gzip.GzipFile):
    """A GzipFile that counts the bytes it hands out."""

    given = 0

    def read(self, size=-1):
        data = super().read(size)
        _CountingGzip.given += len(data)
        return data


def test_a_gzip_stream_is_read_no_further_than_its_header(tmp_path, monkeypatch):
    # 7 labels, then 64 MiB of zeros in further gzip members: about 64 KB on disk.
    path = tmp_path / "bomb.gz"
    zeros = gzip.compress(bytes(1 << 24))
    path.write_bytes(gzip.compress(idx_bytes(LABELS)) + zeros * 4)
    monkeypatch.setattr(data.gzip, "GzipFile", _CountingGzip)
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(info.value) == f"{path}: header (7,) expects 7 data bytes, found more"
    assert _CountingGzip.given <= 8 + 7 + 1


def test_read_idx_insists_on_the_kind_asked_for(tmp_path):
    path = tmp_path / "labels.idx"
    path.write_bytes(idx_bytes(LABELS))
    np.testing.assert_array_equal(read_idx(path, "labels"), LABELS)
    with pytest.raises(DataError) as info:
        read_idx(path, "images")
    assert str(info.value) == f"{path}: expected images (magic 2051), found labels (magic 2049)"
    with pytest.raises(ValueError, match="kind must be one of"):
        read_idx(path, "pictures")


@pytest.mark.timeout(30)  # a FIFO that were opened would wait for a writer forever
@pytest.mark.parametrize(
    ("kind", "what"),
    [
        ("fifo", "is a FIFO"),
        ("/dev/zero", "is a character device"),
        ("folder", "is a folder"),
        ("loop", "is a symlink loop"),
    ],
)
def test_read_idx_opens_only_regular_files(tmp_path, kind, what):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "/dev/zero":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    else:
        path.symlink_to(path.name)
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(info.value) == f"{path}: {what}, not a regular file"


# Bundled MNIST-5k


def test_mnist_5k_shapes_dtypes_and_range():
    (x, t), (x_test, t_test) = load_mnist()
    assert x.shape == (4000, 784) and x_test.shape == (1000, 784)
    assert t.shape == (4000,) and t_test.shape == (1000,)
    assert x.dtype == np.float32 and t.dtype == np.int32
    assert x.min() == 0.0 and x.max() == 1.0
    (x_raw, _), _ = load_mnist(normalize=False)
    assert x_raw.dtype == np.uint8 and x_raw.max() == 255
    np.testing.assert_allclose(x, x_raw / 255, rtol=1e-6)


def test_mnist_5k_is_stratified_and_shuffled():
    (_, t), (_, t_test) = load_mnist()
    np.testing.assert_array_equal(np.bincount(t, minlength=10), np.full(10, 400))
    np.testing.assert_array_equal(np.bincount(t_test, minlength=10), np.full(10, 100))
    assert len(np.unique(t[:100])) == 10  # classes are mixed, not in blocks


def test_mnist_5k_flatten_false_and_one_hot():
    (x, t), (x_test, t_test) = load_mnist(flatten=False, one_hot_label=True)
    (x_flat, labels), _ = load_mnist()
    assert x.shape == (4000, 1, 28, 28) and x_test.shape == (1000, 1, 28, 28)
    np.testing.assert_array_equal(x.reshape(4000, 784), x_flat)
    assert t.shape == (4000, 10) and t.dtype == np.float32 and t_test.shape == (1000, 10)
    np.testing.assert_array_equal(t.sum(axis=1), np.ones(4000))
    np.testing.assert_array_equal(t.argmax(axis=1), labels)


def test_mnist_5k_bundled_file_matches_constant():
    digest = hashlib.sha256(data.MNIST_5K_PATH.read_bytes()).hexdigest()
    assert digest == data.MNIST_5K_SHA256


def test_mnist_5k_checksum_is_enforced(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MNIST_5K_SHA256", "0" * 64)
    with pytest.raises(DataError, match=r"expected sha256 0{64}, found"):
        load_mnist("mnist-5k")
    monkeypatch.undo()
    tampered = tmp_path / "mnist_5k.npz"
    raw = bytearray(data.MNIST_5K_PATH.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    tampered.write_bytes(bytes(raw))
    monkeypatch.setattr(data, "MNIST_5K_PATH", tampered)
    with pytest.raises(DataError, match=str(tampered)):
        load_mnist("mnist-5k")


def test_build_mnist_5k_stratified_and_deterministic(tmp_path):
    # 10 rows per class; each row's first pixel is its CSV row number, so rows are traceable.
    labels = np.repeat(np.arange(10), 10)
    pixels = RNG.integers(0, 256, size=(100, 784))
    pixels[:, 0] = np.arange(100)
    csv = tmp_path / "tiny.csv.gz"
    with gzip.open(csv, "wt") as f:
        np.savetxt(f, np.c_[pixels, labels], fmt="%d", delimiter=",")

    first = build_mnist_5k(csv, tmp_path / "a.npz")
    second = build_mnist_5k(csv, tmp_path / "b.npz")
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz", "tiny.csv.gz"]
    with np.load(first) as z:
        x, t, x_test, t_test = z["x_train"], z["t_train"], z["x_test"], z["t_test"]
    assert x.shape == (80, 784) and x_test.shape == (20, 784) and x.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(t), np.full(10, 8))
    np.testing.assert_array_equal(np.bincount(t_test), np.full(10, 2))
    rows = np.concatenate([x[:, 0], x_test[:, 0]]).astype(int)
    assert sorted(rows) == list(range(100))  # every row used once
    np.testing.assert_array_equal(x, pixels[x[:, 0]])
    np.testing.assert_array_equal(t, labels[x[:, 0]])
    assert not np.all(np.diff(t.astype(int)) >= 0)  # shuffled
    other_seed = build_mnist_5k(csv, tmp_path / "c.npz", seed=1)
    assert other_seed.read_bytes() != first.read_bytes()


def test_build_mnist_5k_rejects_wrong_columns(tmp_path):
    csv = tmp_path / "bad.csv.gz"
    with gzip.open(csv, "wt") as f:
        f.write("1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match="expected rows of 784 pixels"):
        build_mnist_5k(csv, tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()


# Full MNIST from a folder


def test_load_folder_source(tmp_path):
    write_mnist_folder(tmp_path / "mnist")
    (x, t), (x_test, t_test) = load_mnist(tmp_path / "mnist", normalize=False, download=False)
    assert x.shape == (7, 784) and x.dtype == np.uint8 and x_test.shape == (3, 784)
    np.testing.assert_array_equal(x, IMAGES.reshape(7, 784))
    np.testing.assert_array_equal(t, LABELS)
    np.testing.assert_array_equal(t_test, LABELS[:3])
    (x4, t1), _ = load_mnist(str(tmp_path / "mnist"), flatten=False, one_hot_label=True)
    assert x4.shape == (7, 1, 28, 28) and x4.dtype == np.float32
    np.testing.assert_array_equal(t1.argmax(axis=1), LABELS)


def test_load_folder_accepts_gunzipped_files(tmp_path):
    files = write_mnist_folder(tmp_path)
    for name, content in files.items():
        (tmp_path / name).unlink()
        (tmp_path / name.removesuffix(".gz")).write_bytes(gzip.decompress(content))
    (_, t), _ = load_mnist(tmp_path, download=False)
    np.testing.assert_array_equal(t, LABELS)


def test_load_folder_missing_files_names_folder(tmp_path):
    write_mnist_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"missing t10k-labels-idx1-ubyte\.gz") as info:
        load_mnist(tmp_path, download=False)
    assert str(tmp_path) in str(info.value) and "FUNCBP_DATA_DIR" in str(info.value)


def test_load_folder_mismatched_counts(tmp_path):
    write_mnist_folder(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(LABELS[:5])))
    with pytest.raises(DataError, match=r"\(7, 28, 28\) images but .* \(5,\) labels"):
        load_mnist(tmp_path, download=False)


def test_a_label_file_holding_images_is_named(tmp_path):
    write_mnist_folder(tmp_path)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(IMAGES)))  # the image magic, 7 images
    with pytest.raises(DataError) as e:
        load_mnist(tmp_path, download=False)
    assert str(e.value) == f"{labels}: expected labels (magic 2049), found images (magic 2051)"


@pytest.mark.parametrize("split", ["training", "test"])
def test_a_set_of_0_images_is_refused(tmp_path, split):
    write_mnist_folder(tmp_path, **{"n_train" if split == "training" else "n_test": 0})
    images = tmp_path / f"{'train' if split == 'training' else 't10k'}-images-idx3-ubyte.gz"
    with pytest.raises(DataError) as e:
        load_mnist(tmp_path, download=False)
    assert str(e.value) == f"{images}: holds 0 images; the {split} set needs at least one"


@pytest.mark.timeout(30)  # a FIFO that were opened would wait for a writer forever
@pytest.mark.parametrize(
    ("kind", "what"),
    [("fifo", "is a FIFO"), ("folder", "is a folder"), ("loop", "is a symlink loop")],
)
def test_a_non_file_in_place_of_an_idx_file_is_named_not_downloaded_past(
    tmp_path, monkeypatch, kind, what
):
    write_mnist_folder(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path.symlink_to(path.name)

    def no_download(*args, **kwargs):
        raise AssertionError("a download was tried")

    monkeypatch.setattr(data, "download_mnist", no_download)
    with pytest.raises(DataError) as e:
        load_mnist(tmp_path)  # download=True: nothing is fetched past it
    assert str(e.value) == f"{path}: {what}, not a regular file"


def test_mnist_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("FUNCBP_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert mnist_dir() == tmp_path / "home" / ".cache" / "funcbp" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert mnist_dir() == tmp_path / "xdg" / "funcbp" / "mnist"
    monkeypatch.setenv("FUNCBP_DATA_DIR", str(tmp_path / "env"))
    assert mnist_dir() == tmp_path / "env"
    assert mnist_dir(tmp_path / "explicit") == tmp_path / "explicit"


def test_mnist_source_reads_funcbp_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FUNCBP_DATA_DIR", str(tmp_path))
    write_mnist_folder(tmp_path, n_train=5)
    (x, t), _ = load_mnist("mnist", download=False)
    assert x.shape == (5, 784)
    np.testing.assert_array_equal(t, LABELS[:5])


@pytest.mark.parametrize("download", [False, True])
def test_a_missing_funcbp_data_dir_is_refused_not_created(tmp_path, monkeypatch, download):
    folder = tmp_path / "typo" / "mnist"
    monkeypatch.setenv("FUNCBP_DATA_DIR", str(folder))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(DataError) as info:
        load_mnist("mnist", download=download)
    assert str(info.value) == (
        f"FUNCBP_DATA_DIR={folder} does not exist; create it, or unset FUNCBP_DATA_DIR to use "
        f"the download cache {tmp_path / 'xdg' / 'funcbp' / 'mnist'}, or pass --data DIR"
    )
    with pytest.raises(DataError, match="does not exist"):
        download_mnist(mirrors=[], progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("download", [False, True])
def test_a_funcbp_data_dir_naming_a_file_is_refused(tmp_path, monkeypatch, download):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("FUNCBP_DATA_DIR", str(tmp_path / "file"))
    expected = (
        f"FUNCBP_DATA_DIR={tmp_path / 'file'} is not a folder; expected a folder holding the "
        "MNIST files"
    )
    with pytest.raises(DataError) as info:
        load_mnist("mnist", download=download)
    assert str(info.value) == expected
    with pytest.raises(DataError) as info:
        download_mnist(mirrors=[], progress=False)
    assert str(info.value) == expected


def test_mnist_source_offline_message_names_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FUNCBP_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="--data DIR") as info:
        load_mnist("mnist", download=False)
    assert f"in {tmp_path};" in str(info.value)


# Argument checking


@pytest.mark.parametrize("source", ["mnist5k", "fashion"])
def test_unknown_source_lists_choices(source):
    with pytest.raises(DataError, match=f"unknown source='{source}'.*'mnist-5k', 'mnist'"):
        load_mnist(source)


def test_missing_source_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_mnist(tmp_path / "absent")
    with pytest.raises(DataError, match="does not exist"):
        load_mnist(str(tmp_path / "absent"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is not a folder"):
        load_mnist(tmp_path / "file")


@pytest.mark.parametrize("name", ["normalize", "flatten", "one_hot_label", "download"])
def test_flags_must_be_bool(name):
    with pytest.raises(TypeError, match=f"{name} must be a bool, got int"):
        load_mnist(**{name: 1})


def test_source_type_checked():
    with pytest.raises(TypeError, match="source must be a str or path, got int"):
        load_mnist(5)


# Download, against a local server


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www: good/ has the right files, bad/ corrupted ones, empty/ none."""
    www = tmp_path / "www"
    files = write_mnist_folder(www / "good")
    (www / "bad").mkdir()
    for name, content in files.items():
        (www / "bad" / name).write_bytes(content[:-1] + bytes([content[-1] ^ 1]))
    (www / "empty").mkdir()
    handler = functools.partial(QuietHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/"
        md5s = {name: hashlib.md5(c).hexdigest() for name, c in files.items()}
        yield url, md5s, files
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_download_success(tmp_path, server, capsys):
    url, md5s, files = server
    dest = tmp_path / "dest"
    assert download_mnist(dest, mirrors=[url + "good/"], md5s=md5s) == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(files)
    for name, content in files.items():
        assert (dest / name).read_bytes() == content
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err  # the tqdm bar
    (_, t), _ = load_mnist(dest, download=False)
    np.testing.assert_array_equal(t, LABELS)


def test_download_falls_back_past_bad_checksum_404_and_closed_port(
    tmp_path, server, closed_port_url
):
    url, md5s, files = server
    mirrors = [closed_port_url, url + "empty/", url + "bad/", url + "good/"]
    dest = tmp_path / "dest"
    download_mnist(dest, mirrors=mirrors, md5s=md5s, progress=False)
    assert sorted(p.name for p in dest.iterdir()) == sorted(files)
    for name, content in files.items():
        assert (dest / name).read_bytes() == content


def test_download_stops_trying_an_unreachable_mirror(
    tmp_path, server, closed_port_url, monkeypatch
):
    url, md5s, _ = server
    tried = []

    def recording_fetch(url, *args):
        tried.append(url)
        return fetch(url, *args)

    fetch = data._fetch
    monkeypatch.setattr(data, "_fetch", recording_fetch)
    download_mnist(
        tmp_path / "dest", mirrors=[closed_port_url, url + "good/"], md5s=md5s, progress=False
    )
    assert sum(u.startswith(closed_port_url) for u in tried) == 1  # not once per file
    assert sum(u.startswith(url + "good/") for u in tried) == 4


def test_download_bad_checksum_leaves_nothing(tmp_path, server):
    url, md5s, _ = server
    with pytest.raises(DataError, match=r"last error: .*expected MD5") as info:
        download_mnist(tmp_path / "dest", mirrors=[url + "bad/"], md5s=md5s, progress=False)
    assert list((tmp_path / "dest").iterdir()) == []
    assert str(tmp_path / "dest") in str(info.value)


def test_download_offline_names_files_and_folder(tmp_path, closed_port_url, monkeypatch):
    monkeypatch.setenv("FUNCBP_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError) as info:
        download_mnist(mirrors=[closed_port_url], progress=False, timeout=2)
    message = str(info.value)
    assert "\n" not in message
    assert all(name in message for name in data.MNIST_MD5)
    assert f"put the files in {tmp_path}," in message and "FUNCBP_DATA_DIR" in message
    assert list(tmp_path.iterdir()) == []


def test_a_mirror_sending_too_much_is_cut_off(tmp_path, server, monkeypatch):
    url, md5s, files = server
    monkeypatch.setattr(data, "_MAX_DOWNLOAD", 100)
    with pytest.raises(DataError, match=r"last error: .*sent more than 100 bytes; expected MNIST"):
        download_mnist(tmp_path / "dest", mirrors=[url + "good/"], md5s=md5s, progress=False)
    kept = sorted(p.name for p in (tmp_path / "dest").iterdir())
    assert kept == sorted(name for name, c in files.items() if len(c) <= 100)  # the labels
    assert "train-images-idx3-ubyte.gz" not in kept


def test_download_skips_present_files(tmp_path, server):
    url, md5s, files = server
    dest = tmp_path / "dest"
    dest.mkdir()
    mine = gzip.compress(idx_bytes(IMAGES[:2]))  # differs from the server's copy
    (dest / "train-images-idx3-ubyte.gz").write_bytes(mine)
    download_mnist(dest, mirrors=[url + "good/"], md5s=md5s, progress=False)
    assert (dest / "train-images-idx3-ubyte.gz").read_bytes() == mine
    name = "t10k-labels-idx1-ubyte.gz"
    assert (dest / name).read_bytes() == files[name]


@pytest.mark.parametrize("where", ["FUNCBP_DATA_DIR", "cache"])
def test_load_mnist_downloads_missing_files(tmp_path, server, monkeypatch, where):
    url, md5s, _ = server
    local = functools.partial(download_mnist, mirrors=[url + "good/"], md5s=md5s, progress=False)
    monkeypatch.setattr(data, "download_mnist", local)
    if where == "cache":  # the one folder that is made when missing
        monkeypatch.delenv("FUNCBP_DATA_DIR", raising=False)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        folder = tmp_path / "xdg" / "funcbp" / "mnist"
    else:
        folder = tmp_path / "mine"
        folder.mkdir()
        monkeypatch.setenv("FUNCBP_DATA_DIR", str(folder))
    (x, t), (x_test, _) = load_mnist("mnist")
    assert x.shape == (7, 784) and x_test.shape == (3, 784)
    np.testing.assert_array_equal(t, LABELS)
    assert sorted(p.name for p in folder.iterdir()) == sorted(data.MNIST_MD5)
