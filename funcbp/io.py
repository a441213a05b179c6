"""Files: atomic writes, and a reader of params files that runs no code.

A write goes to a temporary name in the same folder, then a rename: a crash
or Ctrl-C mid-write leaves the old file (or none), never half a file.

:func:`load_params` reads named arrays from ``.npz`` or from pickles such as
the book's trained weights, refusing anything a dict of arrays does not need.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import pickle
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "PARAMS_SUFFIXES",
    "ParamsError",
    "atomic_path",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable",
    "load_params",
]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix + ".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        tmp.chmod(0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Calls ``write(f)`` on a temporary binary file, then renames it onto ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))


def check_writable(folder: str | os.PathLike, what: str = "folder") -> Path:
    """Creates ``folder`` if needed and proves a file can be written there, before any work.

    Raises:
        OSError: one line naming ``what`` and the folder.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise OSError(f"{what} {folder} is not writable: {e.strerror or e}") from None
    return folder


# --- reading params -----------------------------------------------------------


class ParamsError(ValueError):
    """A params file that cannot be read safely: one line that names the file."""


PARAMS_SUFFIXES = (".npz", ".pkl")

# The functions numpy's own __reduce__ names, so that neither numpy.core (NumPy
# 1.x; importing it warns in NumPy 2) nor numpy._core (NumPy 2) is imported.
_RECONSTRUCT = np.zeros(0).__reduce__()[0]
_SCALAR = np.float64(0).__reduce__()[0]
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]

# Every global a pickled dict of NumPy arrays names, and nothing else. None of
# these runs code it is handed: an object dtype is refused after loading.
_PICKLE_GLOBALS = {
    # An array: _reconstruct(ndarray, shape, dtype), then its state. NumPy 1.x
    # (the book's files) wrote numpy.core, NumPy 2 writes numpy._core.
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    # A NumPy scalar value, such as np.float64(0.1).
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    # An array pickled with protocol 5.
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    # A params dict saved as an OrderedDict, a plain container.
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class _ParamsUnpickler(pickle.Unpickler):
    """Resolves only the globals a dict of NumPy arrays needs; any other is refused unrun."""

    def __init__(self, file: IO[bytes], path: Path):
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            # repr keeps the message on one line, whatever the names hold.
            raise ParamsError(
                f"{self.path}: refusing the pickle's global {f'{module}.{name}'!r}; "
                f"a params pickle may hold only a dict of NumPy arrays"
            ) from None


def load_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads named arrays, such as the book's trained ``params.pkl``, without running code.

    A ``.npz`` is read with ``allow_pickle=False``. A ``.pkl`` is unpickled
    with only the globals a dict of NumPy arrays needs (NumPy 1.x or 2);
    anything else in it, such as ``os.system``, is refused before it is called.

    Args:
        path: a ``.npz`` or ``.pkl`` file.

    Returns:
        ``{name: array}``, e.g. ``{"W1": (D, H), "b1": (H,), ...}``.

    Raises:
        ParamsError: a ValueError naming the file, for another suffix, a
            refused global, a damaged file, or anything but a dict of
            non-object arrays.
        OSError: the file cannot be read.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in PARAMS_SUFFIXES:
        raise ParamsError(
            f"{path}: params files must end in {' or '.join(PARAMS_SUFFIXES)}, "
            f"got {suffix or 'no suffix'!r}"
        )
    data = path.read_bytes()
    try:
        params = _read_npz(data, path) if suffix == ".npz" else _read_pickle(data, path)
    except ParamsError:
        raise
    except Exception:
        # Damaged input can fail anywhere in the zip, npy or pickle parsers,
        # with errors from BadZipFile to UnpicklingError; the user needs one line.
        raise ParamsError(f"{path}: not a readable {suffix} file (damaged or truncated)") from None
    return _named_arrays(params, path)


def _read_npz(data: bytes, path: Path) -> dict[str, Any]:
    loaded = np.load(io.BytesIO(data), allow_pickle=False)
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ParamsError(f"{path}: holds a single array, not named arrays")
    with loaded:
        params = {}
        for name in loaded.files:
            try:
                params[name] = loaded[name]
            except ValueError:
                if _npz_dtype(loaded, name).hasobject:
                    raise ParamsError(_object_array(path, name)) from None
                raise
        return params


def _npz_dtype(npz: Any, name: str) -> np.dtype:
    """The dtype in an entry's .npy header, read without reading the array."""
    fmt = np.lib.format
    with npz.zip.open(f"{name}.npy") as f:
        version = fmt.read_magic(f)
        read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
        return read_header[version](f)[2]


def _read_pickle(data: bytes, path: Path) -> Any:
    return _ParamsUnpickler(io.BytesIO(data), path).load()


def _object_array(path: Path, name: str) -> str:
    return f"{path}: param {name!r} is an object array; params must be numeric arrays"


def _named_arrays(params: Any, path: Path) -> dict[str, np.ndarray]:
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a dict of named arrays, got {type(params).__name__}")
    arrays = {}
    for name, value in params.items():
        if not isinstance(name, str):
            raise ParamsError(f"{path}: param names must be strings, got {name!r}")
        if not isinstance(value, np.ndarray | np.generic):
            raise ParamsError(
                f"{path}: param {name!r} must be a NumPy array, got {type(value).__name__}"
            )
        if value.dtype.hasobject:
            raise ParamsError(_object_array(path, name))
        arrays[name] = np.asarray(value)
    return arrays
