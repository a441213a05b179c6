"""Files: writes that land where the user meant, and readers that stay bounded.

A write goes to a temporary name in the target's folder, then a rename, so a
crash or Ctrl-C mid-write leaves the old file (or none), never half a file. A
symlink is written through to its target; a FIFO, a device or ``-`` (stdout)
is written as a stream and never replaced; a folder, a socket and ``''`` are
refused. A write that fails raises :class:`WriteError`, one line naming the file.

:func:`load_params` reads named arrays from ``.npz`` or from pickles such as
the book's trained weights, runs no code, opens only regular files, and checks
every declared size before it allocates. :func:`check_weights` refuses weights
that are not finite floats. ``docs/files.md`` has the rules and the reasons.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import io
import math
import os
import pickle
import pickletools
import re
import secrets
import shutil
import stat
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np

__all__ = [
    "MAX_PARAMS_BYTES",
    "PARAMS_SUFFIXES",
    "STDOUT",
    "ParamsError",
    "WriteError",
    "atomic_path",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_path",
    "check_weights",
    "check_writable",
    "load_params",
    "open_regular",
    "read_into",
    "read_npz_bytes",
    "shorten",
]

STDOUT = "-"


def shorten(value: object, limit: int = 120) -> str:
    """``str(value)`` on one line of at most about ``limit`` characters.

    Control characters are escaped (a newline in a file name stays on the
    line) and a long value keeps its head and tail, with the length between.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        half = limit // 2
        head, tail = _escaped(text[:half])[:half], _escaped(text[-half:])[-half:]
        return f"{head}…[{len(text):,} characters]…{tail}"
    return _escaped(text)[: limit * 2]


def _escaped(text: str) -> str:
    return text if text.isprintable() else repr(text)[1:-1]


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # unreachable


# --- where a write lands ----------------------------------------------------------


class WriteError(OSError):
    """A file or folder that cannot be written: one line naming it (``errno`` is kept)."""

    def __init__(self, code: int | None, message: str):
        super().__init__(code, message)

    def __str__(self) -> str:
        return self.strerror


@dataclass(frozen=True)
class _Target:
    path: Path | None  # the file to replace, or the stream to open as given; None: stdout
    stream: bool  # write through (FIFO, device, stdout), never replace
    existing: os.stat_result | None = None  # the regular file being replaced
    fd: int | None = None  # one of this process's descriptors (/dev/stdout is 1)


def _target(path: str | os.PathLike, what: str) -> _Target:
    """Where a write to ``path`` lands, or a one-line refusal naming it."""
    text = os.fspath(path)
    if text == STDOUT:
        return _Target(None, True, fd=1)
    if not text:
        raise WriteError(errno.EINVAL, f"{what}: expected a file path, got ''")
    shown = shorten(text)
    if "\0" in text:
        raise WriteError(errno.EINVAL, f"{what} {shown} holds a NUL character")
    if text.endswith(os.sep) or os.path.basename(text) in (".", ".."):
        raise WriteError(errno.EISDIR, f"{what} {shown} names a folder; expected a file")
    fd = _own_fd(text)
    if fd is not None:  # even when it is a regular file: renaming onto it would unlink it
        return _Target(Path(text), True, fd=fd)
    try:
        st = os.stat(text)  # through symlinks
    except FileNotFoundError:
        st = None  # a new file, or a symlink to one
    except OSError as e:
        why = "is a symlink loop" if e.errno == errno.ELOOP else f"cannot be used: {e.strerror}"
        raise WriteError(e.errno, f"{what} {shown} {why}") from None
    real = Path(os.path.realpath(text))
    if st is None:
        return _Target(real, False)
    if stat.S_ISDIR(st.st_mode):
        raise WriteError(errno.EISDIR, f"{what} {shown} is a folder; expected a file")
    if not (stat.S_ISREG(st.st_mode) or _is_stream(st.st_mode)):
        raise WriteError(
            errno.EINVAL, f"{what} {shown} is {_kind(st.st_mode)}; expected a file, FIFO or device"
        )
    if not os.access(text, os.W_OK):
        raise WriteError(errno.EACCES, f"{what} {shown} is read-only")
    if stat.S_ISREG(st.st_mode):
        return _Target(real, False, existing=st)
    return _Target(Path(text), True)


_PROC_FD = re.compile(r"/proc/(?:self|thread-self|(\d+)(?:/task/\d+)?)/fd/(\d+)")


def _own_fd(text: str) -> int | None:
    """The descriptor of this process that ``text`` reaches through /proc, as /dev/stdout does.

    Such a path names an open file, not a place: stdout redirected to a file
    must be written at its offset, and the file never renamed over.
    """
    hop = os.path.abspath(text)
    for _ in range(40):  # the kernel's own limit on symlinks followed
        hop = os.path.join(os.path.realpath(os.path.dirname(hop)), os.path.basename(hop))
        match = _PROC_FD.fullmatch(hop)
        if match:
            return int(match[2]) if match[1] in (None, str(os.getpid())) else None
        try:
            hop = os.path.join(os.path.dirname(hop), os.readlink(hop))
        except OSError:  # not a link (or unreadable): the chain ends here
            return None
    return None


def _is_stream(mode: int) -> bool:
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISREG: "a file",
        stat.S_ISDIR: "a folder",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a regular file")


def check_output_path(path: str | os.PathLike, what: str = "output") -> Path | str:
    """Checks, before any work, that a file can be written at ``path`` as the user meant.

    ``-`` is stdout; a FIFO or device is written through; a symlink is followed.
    For a file, the nearest existing folder above it takes a probe file.

    Returns:
        Where the write will land: the resolved path, or ``"-"``.

    Raises:
        WriteError: one line naming ``what`` and the path (an OSError).
    """
    target = _target(path, what)
    if target.stream:
        return STDOUT if target.path is None else target.path
    folder = target.path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise WriteError(
            errno.ENOTDIR, f"{what} {shorten(os.fspath(path))}: {shorten(folder)} is not a folder"
        )
    _probe(folder, f"{what} {shorten(os.fspath(path))}")
    return target.path


def check_writable(folder: str | os.PathLike, what: str = "folder", *, need_bytes: int = 0) -> Path:
    """Creates ``folder`` if needed and proves it takes ``need_bytes`` more, before any work.

    A probe file is written, synced and removed; then the space free to
    ordinary users is compared with ``need_bytes``.

    Raises:
        WriteError: one line naming ``what`` and the folder (an OSError).
    """
    text = os.fspath(folder)
    if not text:
        raise WriteError(errno.EINVAL, f"{what}: expected a folder, got ''")
    folder, shown = Path(text), f"{what} {shorten(text)}"
    if folder.exists() and not folder.is_dir():
        raise WriteError(
            errno.ENOTDIR, f"{shown} is {_kind(folder.stat().st_mode)}; expected a folder"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(e.errno, f"{shown} is not writable: {e.strerror or e}") from None
    _probe(folder, shown)
    vfs = os.statvfs(folder)
    free = vfs.f_bavail * vfs.f_frsize
    if need_bytes > free:
        raise WriteError(
            errno.ENOSPC, f"{shown} has {_size(free)} free; this needs about {_size(need_bytes)}"
        )
    return folder


def _probe(folder: Path, shown: str) -> None:
    """Writes, syncs and removes a small file in ``folder``: a full disk fails here, not later."""
    try:
        tmp = _create_temp(folder, "probe", "", None)
        try:
            with open(tmp, "wb") as f:
                f.write(bytes(4096))
                f.flush()
                os.fsync(f.fileno())
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as e:
        raise WriteError(e.errno, f"{shown} is not writable: {e.strerror or e}") from None


# --- writing ------------------------------------------------------------------------


def _create_temp(folder: Path, name: str, suffix: str, like: os.stat_result | None) -> Path:
    """A new empty file beside ``name``, with the umask's permissions, or ``like``'s.

    Replacing a file keeps its permissions, and its owner where that is allowed.
    """
    while True:
        tmp = folder / f".{name[:64]}.{secrets.token_hex(4)}{suffix}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        try:
            if like is not None:
                with contextlib.suppress(OSError):  # only root may give a file away
                    os.fchown(fd, like.st_uid, like.st_gid)
                os.fchmod(fd, stat.S_IMODE(like.st_mode))
        finally:
            os.close(fd)
        return tmp


def _write_error(e: OSError, path: str | os.PathLike) -> WriteError:
    if isinstance(e, WriteError):
        return e
    return WriteError(e.errno, f"cannot write {shorten(os.fspath(path))}: {e.strerror or e}")


def _ours(e: OSError, *paths: Path) -> bool:
    """Whether ``e`` is about writing the file (and not, say, a program the body ran)."""
    return e.filename is None or os.fspath(e.filename) in {os.fspath(p) for p in paths}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yields a temporary path; on success its content lands on ``path``.

    A regular file (or a new one) is replaced by a rename, keeping its
    permissions; a symlink's target is replaced, not the link. A FIFO, a
    device or ``-`` receives a copy of the content as a stream.

    Raises:
        WriteError: ``path`` is refused, or a write fails; one line naming it.
    """
    target = _target(path, "output")
    if target.stream:
        with _streamed(target, path, suffix) as tmp:
            yield tmp
        return
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temp(target.path.parent, target.path.name, suffix, target.existing)
    except OSError as e:
        raise _write_error(e, path) from None
    try:
        yield tmp
        os.replace(tmp, target.path)
        _sync_folder(target.path.parent)
    except OSError as e:
        if not _ours(e, tmp, target.path):
            raise
        raise _write_error(e, path) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _streamed(target: _Target, path: str | os.PathLike, suffix: str) -> Iterator[Path]:
    """A private temporary file whose whole content is then copied into the stream.

    Nothing reaches the stream unless the content was made whole.
    """
    staging = Path(tempfile.gettempdir())
    try:
        tmp = _create_temp(staging, "funcbp-stream", suffix, None)
        tmp.chmod(0o600)  # private: the folder is shared
    except OSError as e:
        raise WriteError(
            e.errno,
            f"cannot write {shorten(os.fspath(path))}: cannot stage it "
            f"in {shorten(staging)}: {e.strerror or e}",
        ) from None
    try:
        try:
            yield tmp
        except OSError as e:
            if not _ours(e, tmp):
                raise
            raise WriteError(
                e.errno,
                f"cannot write {shorten(os.fspath(path))}: staging it in "
                f"{shorten(staging)} failed: {e.strerror or e}",
            ) from None
        try:
            _copy_into(tmp, target)
        except OSError as e:
            raise _write_error(e, path) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _copy_into(tmp: Path, target: _Target) -> None:
    with open(tmp, "rb") as src:
        if target.fd is None:
            with open(target.path, "wb") as out:
                shutil.copyfileobj(src, out)
            return
        stream = {1: sys.stdout, 2: sys.stderr}.get(target.fd)
        if stream is None:
            while chunk := src.read(1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(target.fd, view) :]
            return
        stream.flush()  # what was printed before comes first
        out = getattr(stream, "buffer", None)
        if out is None:  # a text-only stream, e.g. io.StringIO
            stream.write(src.read().decode(errors="replace"))
        else:
            shutil.copyfileobj(src, out)
            out.flush()


def _sync_folder(folder: Path) -> None:
    # Makes the rename itself durable; some filesystems cannot sync a folder.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Calls ``write(f)`` on a temporary binary file whose content then lands on ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))


# --- reading ------------------------------------------------------------------------


def open_regular(
    path: str | os.PathLike, error: Callable[[str], Exception] = ValueError
) -> BinaryIO:
    """Opens ``path`` for binary reading if it is a regular file (symlinks followed).

    A FIFO is never opened (it would block), nor a device, a folder or a
    symlink loop: each raises ``error("<path>: is a FIFO, not a regular file")``.

    Raises:
        error: ``path`` is not a regular file.
        OSError: ``path`` is missing or cannot be read.
    """
    shown = shorten(os.fspath(path))
    if "\0" in os.fspath(path):
        raise error(f"{shown}: holds a NUL character, so it names no file")
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise error(f"{shown}: is a symlink loop, not a regular file") from None
        raise
    if not stat.S_ISREG(mode):
        raise error(f"{shown}: is {_kind(mode)}, not a regular file")
    # O_NONBLOCK: if a FIFO replaced the file since the stat, the open still returns.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{shown}: is {_kind(mode)}, not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_into(f: IO[bytes], view: memoryview, chunk: int = 1 << 20) -> int:
    """Fills ``view`` from ``f`` in chunks; returns how many bytes came (fewer at the end)."""
    done = 0
    while done < len(view):
        data = f.read(min(chunk, len(view) - done))
        if not data:
            break
        view[done : done + len(data)] = data
        done += len(data)
    return done


# --- reading params -----------------------------------------------------------


class ParamsError(ValueError):
    """A params file that cannot be read safely: one line that names the file."""


PARAMS_SUFFIXES = (".npz", ".pkl")
# Far above any model here (the deep convnet for 64 seeds is under 500 MiB), far
# below what a crafted header may declare.
MAX_PARAMS_BYTES = 1 << 30
_MAX_NAME = 256
# The dtypes a params file may hold: bool, integers and floats (and complex, so
# that check_weights can name it). Strings, dates, void and structs are refused.
_PARAMS_KINDS = "biufc"
# Deflate cannot expand more than about 1032:1; a member claiming more is crafted.
_MAX_DEFLATE_RATIO = 1032

Shapes = Mapping[str, Sequence[int]]


def load_params(
    path: str | os.PathLike, *, shapes: Shapes | None = None, max_bytes: int = MAX_PARAMS_BYTES
) -> dict[str, np.ndarray]:
    """Reads named arrays, such as the book's trained ``params.pkl``, without running code.

    Only a regular file is opened. A ``.npz``'s declared shapes are checked
    against its members' sizes, ``shapes`` and ``max_bytes`` before any array
    is allocated. A ``.pkl`` may be at most ``max_bytes`` long, nest only as
    deep as a dict of arrays does, and name only the globals such a dict
    needs (NumPy 1.x or 2, pickle protocols 0 to 5); anything else, such as
    ``os.system``, is refused before it is called.

    Args:
        path: a ``.npz`` or ``.pkl`` file.
        shapes: if given, ``{name: shape}`` the file must hold exactly.
        max_bytes: the most array data (``.npz``) or file (``.pkl``) to read.

    Returns:
        ``{name: array}``, e.g. ``{"W1": (D, H), "b1": (H,), ...}``.

    Raises:
        ParamsError: a ValueError naming the file, for another suffix, a file
            that is not regular, a refused global, a damaged file, a size
            beyond the bounds, or anything but a dict of numeric arrays.
        OSError: the file is missing or cannot be read.
    """
    path = Path(path)
    shown = shorten(os.fspath(path))
    suffix = path.suffix.lower()
    if suffix not in PARAMS_SUFFIXES:
        raise ParamsError(
            f"{shown}: params files must end in {' or '.join(PARAMS_SUFFIXES)}, "
            f"got {shorten(suffix, 20) or 'no suffix'!r}"
        )
    with open_regular(path, ParamsError) as f:
        size = os.fstat(f.fileno()).st_size
        if suffix == ".npz":
            return _guarded(lambda: _read_npz(f, shown, shapes, max_bytes, size), shown, suffix)
        if size > max_bytes:
            raise ParamsError(f"{shown}: {_size(size)} is more than a params file may hold")
        data = f.read(max_bytes + 1)
    arrays = _guarded(lambda: _named_arrays(_read_pickle(data, shown), shown), shown, suffix)
    # Arrays may share one buffer of the pickle; a caller's copies would not.
    _check_total(sum(a.nbytes for a in arrays.values()), max_bytes, shown)
    if shapes is not None:
        _check_shapes({k: v.shape for k, v in arrays.items()}, shapes, shown)
    return arrays


def read_npz_bytes(
    data: bytes, source: str, *, shapes: Shapes | None = None, max_bytes: int = MAX_PARAMS_BYTES
) -> dict[str, np.ndarray]:
    """:func:`load_params` for a ``.npz`` already in memory (e.g. after checking its sha256)."""
    shown = shorten(source)
    reader = lambda: _read_npz(io.BytesIO(data), shown, shapes, max_bytes, len(data))  # noqa: E731
    return _guarded(reader, shown, ".npz")


def _guarded(read: Callable[[], dict[str, np.ndarray]], shown: str, suffix: str) -> dict:
    try:
        return read()
    except ParamsError:
        raise
    except Exception:
        # Damaged input can fail anywhere in the zip, npy or pickle parsers,
        # with errors from BadZipFile to UnpicklingError; the user needs one line.
        raise ParamsError(f"{shown}: not a readable {suffix} file (damaged or truncated)") from None


@dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    offset: int  # where the data starts, after the .npy header
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype


def _read_npz(
    f: IO[bytes], shown: str, shapes: Shapes | None, max_bytes: int, size: int
) -> dict[str, np.ndarray]:
    if f.read(6) == b"\x93NUMPY":
        raise ParamsError(f"{shown}: holds a single array, not named arrays")
    f.seek(0)
    with zipfile.ZipFile(f) as zf:
        members = _npz_members(zf, shown, size)
        _check_total(
            sum(math.prod(m.shape) * m.dtype.itemsize for m in members.values()), max_bytes, shown
        )
        if shapes is not None:
            _check_shapes({name: m.shape for name, m in members.items()}, shapes, shown)
        return {name: _read_member(zf, m) for name, m in members.items()}


def _npz_members(zf: zipfile.ZipFile, shown: str, size: int) -> dict[str, _Member]:
    """Each member's .npy header, checked against the sizes the zip records: nothing allocated."""
    members = {}
    for info in zf.infolist():
        name = info.filename.removesuffix(".npy")
        _check_name(name, shown)
        if name == info.filename or name in members:
            why = "is not an .npy array" if name == info.filename else "appears twice"
            raise ParamsError(f"{shown}: member {name!r} {why}")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ParamsError(
                f"{shown}: member {name!r} uses zip compression {info.compress_type}; "
                ".npz files are stored or deflated"
            )
        ratio = 1 if info.compress_type == zipfile.ZIP_STORED else _MAX_DEFLATE_RATIO
        if info.compress_size > size or info.file_size > ratio * info.compress_size + 1024:
            raise ParamsError(
                f"{shown}: member {name!r} claims {_size(info.file_size)} from "
                f"{_size(info.compress_size)} of a {_size(size)} file"
            )
        members[name] = member = _npy_header(zf, info, name, shown)
        declared = math.prod(member.shape) * member.dtype.itemsize
        if member.offset + declared != info.file_size:
            raise ParamsError(
                f"{shown}: param {name!r} declares {member.dtype}{list(member.shape)} "
                f"({_size(declared)}), but its member holds {_size(info.file_size - member.offset)}"
            )
    return members


def _npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, shown: str) -> _Member:
    fmt = np.lib.format
    with zf.open(info) as m:
        version = fmt.read_magic(m)
        read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
        shape, fortran, dtype = read_header[version](m)
        offset = m.tell()
    _check_dtype(name, dtype, shown)
    if any(n < 0 for n in shape):
        raise ParamsError(f"{shown}: param {name!r} declares the shape {shape}")
    return _Member(info, offset, tuple(shape), bool(fortran), dtype)


def _read_member(zf: zipfile.ZipFile, member: _Member) -> np.ndarray:
    shape = member.shape[::-1] if member.fortran else member.shape
    array = np.empty(shape, member.dtype)
    with zf.open(member.info) as m:
        m.read(member.offset)
        done = read_into(m, memoryview(array.reshape(-1).view(np.uint8)))
        # Reading past the end makes zipfile check the member's CRC.
        if done != array.nbytes or m.read(1):
            raise ValueError("the member's size changed while it was read")
    return array.T if member.fortran else array


def _check_total(total: int, max_bytes: int, shown: str) -> None:
    if total > max_bytes:
        raise ParamsError(
            f"{shown}: declares {_size(total)} of arrays, more than the {_size(max_bytes)} "
            "a params file may hold"
        )


def _check_name(name: str, shown: str) -> None:
    if len(name) > _MAX_NAME:
        raise ParamsError(
            f"{shown}: a param name of {len(name):,} characters ({shorten(name, 40)!r}); "
            f"names are at most {_MAX_NAME}"
        )


def _check_dtype(name: str, dtype: np.dtype, shown: str) -> None:
    if dtype.hasobject:
        raise ParamsError(_object_array(shown, name))
    if dtype.kind not in _PARAMS_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ParamsError(
            f"{shown}: param {name!r} has dtype {shorten(dtype, 60)}; params hold numbers "
            "(bool, int or float)"
        )


def _check_shapes(found: Mapping[str, tuple], expected: Shapes, shown: str) -> None:
    expected = {name: tuple(shape) for name, shape in expected.items()}
    missing = [name for name in expected if name not in found]
    extra = [name for name in found if name not in expected]
    if missing or extra:
        parts = [f"lacks {', '.join(map(repr, missing))}"] if missing else []
        parts += [f"holds unexpected {shorten(', '.join(map(repr, extra)), 80)}"] if extra else []
        raise ParamsError(f"{shown}: {' and '.join(parts)}")
    for name, shape in expected.items():
        if tuple(found[name]) != shape:
            raise ParamsError(
                f"{shown}: param {name!r} has shape {tuple(found[name])}; expected {shape}"
            )


def _object_array(shown: str, name: str) -> str:
    return f"{shown}: param {name!r} is an object array; params must be numeric arrays"


def _named_arrays(params: Any, shown: str) -> dict[str, np.ndarray]:
    if not isinstance(params, dict):
        raise ParamsError(f"{shown}: expected a dict of named arrays, got {type(params).__name__}")
    arrays = {}
    for name, value in params.items():
        if not isinstance(name, str):
            got = shorten(repr(name[:40]), 40) if isinstance(name, bytes) else ""
            if isinstance(name, float) or (isinstance(name, int) and name.bit_length() < 64):
                got = repr(name)
            raise ParamsError(
                f"{shown}: param names must be strings, got {got or type(name).__name__}"
            )
        _check_name(name, shown)
        if not isinstance(value, np.ndarray | np.generic):
            raise ParamsError(
                f"{shown}: param {name!r} must be a NumPy array, got {type(value).__name__}"
            )
        _check_dtype(name, value.dtype, shown)
        arrays[name] = np.asarray(value)
    return arrays


# --- pickles ------------------------------------------------------------------------

# The functions numpy's own __reduce__ names, so that neither numpy.core (NumPy
# 1.x; importing it warns in NumPy 2) nor numpy._core (NumPy 2) is imported.
_RECONSTRUCT = np.zeros(0).__reduce__()[0]
_SCALAR = np.float64(0).__reduce__()[0]
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]

# A dict of arrays nests about 6 deep; hashing a crafted key of 200,000 nested
# tuples overflows the C stack, and one that shares its parts (a tuple of 1,000
# references to a tuple of 1,000 ...) takes forever. Both are refused before
# the unpickler sees them.
_MAX_PICKLE_DEPTH = 32
_MAX_PICKLE_NODES = 1_000_000


class _Refused(Exception):
    """A call in the pickle that a dict of arrays never makes."""


def _call(name: str, args: tuple) -> str:
    return f"{name}({', '.join(shorten(repr(a), 40) for a in args)})"


class _NdarrayToken:
    """What the pickle's ``numpy.ndarray`` resolves to: an argument to _reconstruct, not a call."""

    __slots__ = ()

    def __call__(self, *args: Any) -> Any:
        raise _Refused(_call("numpy.ndarray", args))

    def __repr__(self) -> str:
        return "numpy.ndarray"


class _Call:
    """An allowed callable that a pickle cannot change: BUILD on it fails (no ``__dict__``)."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[..., Any]):
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)

    def __setattr__(self, name: str, value: Any) -> None:
        raise _Refused(f"setting {shorten(name, 40)!r}")


_NDARRAY = _NdarrayToken()


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    # numpy pickles an array as _reconstruct(ndarray, (0,), b'b') and then its state.
    if subtype is not _NDARRAY or shape != (0,):
        raise _Refused(_call("_reconstruct", (subtype, shape, dtype)))
    return _RECONSTRUCT(np.ndarray, (0,), dtype)


def _dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    if not isinstance(spec, str) or len(spec) > 16:
        raise _Refused(_call("numpy.dtype", (spec,)))
    return np.dtype(spec, align, copy)


def _scalar(dtype: Any, *data: Any) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise _Refused(f"numpy scalar of {shorten(repr(dtype), 40)}")
    return _SCALAR(dtype, *data)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any, *rest: Any) -> np.ndarray:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise _Refused(f"_frombuffer of {shorten(repr(dtype), 40)}")
    return _FROMBUFFER(buf, dtype, shape, order, *rest)


def _latin1(text: Any, encoding: Any = "latin1") -> bytes:
    # Protocols 0 to 2 store bytes as _codecs.encode(str, 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"_codecs.encode(..., {shorten(repr(encoding), 40)})")
    return text.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    # ... and an empty bytes as bytes().
    if args:
        raise _Refused(_call("bytes", args))
    return b""


# Every global a pickled dict of NumPy arrays names, and nothing else, each
# behind a check that it is called as numpy calls it: none runs code it is
# handed or allocates more than the pickle holds.
_PICKLE_GLOBALS = {
    # An array: _reconstruct(ndarray, shape, dtype), then its state. NumPy 1.x
    # (the book's files) wrote numpy.core, NumPy 2 writes numpy._core.
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Call(_dtype),
    ("numpy.core.multiarray", "_reconstruct"): _Call(_reconstruct),
    ("numpy._core.multiarray", "_reconstruct"): _Call(_reconstruct),
    # A NumPy scalar value, such as np.float64(0.1).
    ("numpy.core.multiarray", "scalar"): _Call(_scalar),
    ("numpy._core.multiarray", "scalar"): _Call(_scalar),
    # An array pickled with protocol 5.
    ("numpy.core.numeric", "_frombuffer"): _Call(_frombuffer),
    ("numpy._core.numeric", "_frombuffer"): _Call(_frombuffer),
    # Bytes in protocols 0 to 2.
    ("_codecs", "encode"): _Call(_latin1),
    ("__builtin__", "bytes"): _Call(_empty_bytes),
    ("builtins", "bytes"): _Call(_empty_bytes),
    # A params dict saved as an OrderedDict, a plain container.
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class _ParamsUnpickler(pickle.Unpickler):
    """Resolves only the globals a dict of NumPy arrays needs; any other is refused unrun."""

    def __init__(self, file: IO[bytes], shown: str):
        super().__init__(file)
        self.shown = shown

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            # repr keeps the message on one line, whatever the names hold.
            raise ParamsError(
                f"{self.shown}: refusing the pickle's global "
                f"{shorten(f'{module}.{name}', 80)!r}; a params pickle may hold only a dict "
                "of NumPy arrays"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise ParamsError(f"{self.shown}: refusing the pickle's persistent id")


def _read_pickle(data: bytes, shown: str) -> Any:
    _check_pickle_nesting(data, shown)
    try:
        return _ParamsUnpickler(io.BytesIO(data), shown).load()
    except _Refused as e:
        raise ParamsError(
            f"{shown}: refusing the pickle's call {e}; numpy never pickles arrays that way"
        ) from None


# Opcodes that add to the object below them on the stack rather than make a new one.
_MUTATORS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}
_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GETS = {"GET", "BINGET", "LONG_BINGET"}


def _check_pickle_nesting(data: bytes, shown: str) -> None:
    """Walks the opcodes without building anything, tracking each object's depth and size.

    The size counts shared parts once per reference, as hashing and repr
    visit them. Raises ParamsError past the bounds; damage raises ValueError.
    """
    stack: list[int] = []  # object ids
    marks: list[int] = []
    memo: dict[int, int] = {}
    depth: dict[int, int] = {}
    nodes: dict[int, int] = {}

    def new(children: list[int]) -> int:
        key = len(depth)
        depth[key] = 1 + max((depth[c] for c in children), default=-1)
        nodes[key] = 1 + sum(nodes[c] for c in children)
        return key

    for op, arg, _ in pickletools.genops(data):
        if op.name == "MARK":
            marks.append(len(stack))
            continue
        if op.name in _PUTS or op.name == "MEMOIZE":
            memo[len(memo) if op.name == "MEMOIZE" else arg] = stack[-1]
            continue
        if op.name in _GETS or op.name == "DUP":
            stack.append(memo[arg] if op.name in _GETS else stack[-1])
            continue
        if op.name == "POP" and marks and marks[-1] == len(stack):
            marks.pop()
            continue
        children = _operands(op, stack, marks)
        if op.name in _MUTATORS:
            target, children = children[0], children[1:]
            depth[target] = max(depth[target], 1 + max((depth[c] for c in children), default=-1))
            nodes[target] += sum(nodes[c] for c in children)
            stack.append(target)
            made = target
        elif op.stack_after:
            made = new(children)
            stack.extend([made] * len(op.stack_after))
        else:
            continue
        deep = depth[made] > _MAX_PICKLE_DEPTH
        if deep or nodes[made] > _MAX_PICKLE_NODES:
            what = f"nests more than {_MAX_PICKLE_DEPTH} deep" if deep else ""
            raise ParamsError(
                f"{shown}: the pickle {what or f'holds more than {_MAX_PICKLE_NODES:,} objects'}; "
                "a params pickle is a flat dict of arrays"
            )


def _operands(op: pickletools.OpcodeInfo, stack: list[int], marks: list[int]) -> list[int]:
    """Pops what ``op`` takes: the items below its mark, if it has one, then the rest."""
    before = op.stack_before
    if pickletools.markobject in before:
        below = before.index(pickletools.markobject)
        start = marks.pop() - below
    else:
        start = len(stack) - len(before)
    if start < 0:
        raise ValueError("stack underflow")
    taken = stack[start:]
    del stack[start:]
    return taken


# --- weights ------------------------------------------------------------------------


def check_weights(arrays: Mapping[str, Any], source: str) -> None:
    """Refuses weights that are not finite real floats, in one line naming the array.

    Integer, bool, complex, string, void and structured arrays are refused by
    dtype; a NaN or infinity by the index of the first one, e.g. ``b2[3] is inf``.

    Raises:
        ParamsError: a ValueError naming ``source``, the array and what is wrong.
    """
    shown = shorten(source)
    for name, value in arrays.items():
        array = np.asarray(value)
        label = shorten(repr(name), 60)
        if array.dtype.kind != "f":
            raise ParamsError(
                f"{shown}: param {label} has dtype {shorten(array.dtype, 60)}; weights must be "
                "real floating point (float16, float32 or float64)"
            )
        bad = ~np.isfinite(array)
        if bad.any():
            index = tuple(int(i) for i in np.unravel_index(np.argmax(bad), array.shape))
            at = f"[{', '.join(map(str, index))}]" if index else ""
            raise ParamsError(
                f"{shown}: param {label}{at} is {array[index]}; weights must be finite"
            )
