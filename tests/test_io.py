"""Atomic writes, and load_params reading the book's pickled weights without running code."""

import collections
import io
import os
import pickle
import pickletools
import subprocess

import numpy as np
import pytest

from funcbp.io import ParamsError, atomic_write, atomic_write_bytes, atomic_write_text, load_params

# --- atomic writes --------------------------------------------------------------


def test_atomic_writes_replace_the_file_and_leave_no_temp_file(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    assert atomic_write_text(path, "first") == path
    atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["out.txt"]


def test_a_failed_atomic_write_keeps_the_old_file(tmp_path):
    path = atomic_write_text(tmp_path / "out.txt", "old")

    def write_half(f):
        f.write(b"ne")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, write_half)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


# --- load_params: what loads ------------------------------------------------------

# As the book's SimpleConvNet saves them, plus an integer array and a NumPy scalar.
PARAMS = {
    "W1": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) / 7,
    "b1": np.linspace(-1, 1, 3),
    "steps": np.arange(4, dtype=np.int64),
    "lr": np.float64(0.01),
}


def _listing(data: bytes) -> str:
    """pickletools' listing of the stream, in which the names the pickle imports appear."""
    out = io.StringIO()
    pickletools.dis(data, out=out)
    return out.getvalue()


def _numpy1_pickle(params) -> bytes:
    """A protocol-4 pickle naming numpy.core.multiarray, as NumPy 1.x wrote the book's files."""
    data = pickle.dumps(params, protocol=4)
    # FRAME ops hold byte counts; they are optional, so drop them before names change length.
    frames = [pos for op, _, pos in pickletools.genops(data) if op.name == "FRAME"]
    for pos in reversed(frames):
        data = data[:pos] + data[pos + 9 :]
    old, new = b"numpy._core.multiarray", b"numpy.core.multiarray"
    # SHORT_BINUNICODE: opcode, one length byte, the text.
    return data.replace(b"\x8c" + bytes([len(old)]) + old, b"\x8c" + bytes([len(new)]) + new)


def _assert_same_arrays(loaded, expected):
    assert list(loaded) == list(expected)
    for name, value in expected.items():
        value = np.asarray(value)
        assert type(loaded[name]) is np.ndarray
        assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape
        np.testing.assert_array_equal(loaded[name], value)


def test_loads_a_pickle_written_by_numpy_2(tmp_path):
    data = pickle.dumps(PARAMS, protocol=4)
    assert "numpy._core.multiarray" in _listing(data)
    (tmp_path / "params.pkl").write_bytes(data)
    _assert_same_arrays(load_params(tmp_path / "params.pkl"), PARAMS)


def test_loads_a_pickle_with_numpy_1_names_as_the_books_files_have(tmp_path):
    data = _numpy1_pickle(PARAMS)
    listing = _listing(data)  # also proves the rewritten stream is well formed
    assert "numpy.core.multiarray" in listing and "numpy._core" not in listing
    assert "'_reconstruct'" in listing and "'scalar'" in listing
    (tmp_path / "params.pkl").write_bytes(data)
    (tmp_path / "numpy2.pkl").write_bytes(pickle.dumps(PARAMS, protocol=4))
    loaded = load_params(tmp_path / "params.pkl")
    _assert_same_arrays(loaded, PARAMS)
    _assert_same_arrays(loaded, load_params(tmp_path / "numpy2.pkl"))


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("protocol5.pkl", lambda p: p.write_bytes(pickle.dumps(PARAMS, protocol=5))),
        ("ordered.pkl", lambda p: p.write_bytes(pickle.dumps(collections.OrderedDict(PARAMS)))),
        ("params.npz", lambda p: np.savez(p, **PARAMS)),
        ("params.npz", lambda p: np.savez_compressed(p, **PARAMS)),
    ],
    ids=["protocol 5", "OrderedDict", "npz", "compressed npz"],
)
def test_loads_other_dicts_of_arrays(tmp_path, name, write):
    write(tmp_path / name)
    _assert_same_arrays(load_params(tmp_path / name), PARAMS)


# --- load_params: what is refused, unrun --------------------------------------------


class _Reduces:
    """Pickles as ``fn(*args)``: what a malicious file would run when loaded."""

    def __init__(self, fn, *args):
        self.reduced = (fn, args)

    def __reduce__(self):
        return self.reduced


def _evil(kind, marker, tmp_path):
    """An object whose unpickling creates ``marker``, and the global that would do it."""
    touch = f"touch {marker}"
    if kind == "os.system":
        return _Reduces(os.system, touch), "system"
    if kind == "builtins.eval":
        return _Reduces(eval, f"open({str(marker)!r}, 'w').close()"), "builtins.eval"
    if kind == "subprocess.Popen":
        return _Reduces(subprocess.Popen, ["touch", str(marker)]), "subprocess.Popen"
    if kind == "numpy.load":  # np.load(inner, None, allow_pickle=True) runs the inner pickle
        inner = tmp_path / "inner.pkl"
        inner.write_bytes(pickle.dumps(_Reduces(os.system, touch)))
        return _Reduces(np.load, str(inner), None, True), "load"
    if kind == "in an object array":
        return np.array([_Reduces(os.system, touch)], dtype=object), "system"
    raise AssertionError(kind)


def _load_unsafely(data):
    loaded = pickle.loads(data)
    for value in loaded.values():
        getattr(value, "wait", lambda: None)()  # a Popen runs in the background


@pytest.mark.parametrize(
    "kind",
    ["os.system", "builtins.eval", "subprocess.Popen", "numpy.load", "in an object array"],
)
def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path, kind):
    marker = tmp_path / "marker"
    evil, global_name = _evil(kind, marker, tmp_path)
    data = pickle.dumps({"W1": np.zeros(3), "b1": evil}, protocol=4)
    path = tmp_path / "params.pkl"
    path.write_bytes(data)

    with pytest.raises(ParamsError) as e:
        load_params(path)
    assert not marker.exists()
    message = str(e.value)
    assert "\n" not in message and str(path) in message
    assert "refusing the pickle's global" in message and global_name in message

    _load_unsafely(data)  # the file is really evil: plain pickle runs it
    assert marker.exists()


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("list.pkl", pickle.dumps([np.zeros(2)]), "expected a dict of named arrays, got list"),
        ("keys.pkl", pickle.dumps({1: np.zeros(2)}), "param names must be strings, got 1"),
        ("list.pkl", pickle.dumps({"W": [1.0]}), "param 'W' must be a NumPy array, got list"),
        (
            "object.pkl",
            pickle.dumps({"W": np.array([1, None], dtype=object)}),
            "param 'W' is an object array",
        ),
    ],
    ids=["not a dict", "int key", "list value", "object array"],
)
def test_anything_but_a_dict_of_arrays_is_refused(tmp_path, name, content, message):
    path = _write(tmp_path / name, content)
    with pytest.raises(ParamsError, match=message) as e:
        load_params(path)
    assert str(e.value).startswith(f"{path}: ")


def test_npz_object_array_or_single_array_is_refused(tmp_path):
    np.savez(tmp_path / "object.npz", W=np.array([1, None], dtype=object))
    with pytest.raises(ParamsError, match=r"object\.npz: param 'W' is an object array") as e:
        load_params(tmp_path / "object.npz")
    assert "allow_pickle" not in str(e.value)

    with open(tmp_path / "single.npz", "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(ParamsError, match=r"single\.npz: holds a single array"):
        load_params(tmp_path / "single.npz")


_VALID_PKL = pickle.dumps(PARAMS, protocol=4)
_RANDOM = np.random.default_rng(0).bytes(256)


def _valid_npz(tmp_path):
    np.savez(tmp_path / "valid.npz", **PARAMS)
    return (tmp_path / "valid.npz").read_bytes()


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.pkl", lambda tmp: b""),
        ("random.pkl", lambda tmp: _RANDOM),
        ("truncated.pkl", lambda tmp: _VALID_PKL[: len(_VALID_PKL) // 2]),
        ("empty.npz", lambda tmp: b""),
        ("random.npz", lambda tmp: _RANDOM),
        ("badzip.npz", lambda tmp: b"PK\x03\x04" + _RANDOM),
        ("truncated.npz", lambda tmp: _valid_npz(tmp)[:-40]),
        ("cut-in-an-array.npz", lambda tmp: _valid_npz(tmp)[:300]),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_damaged_file_is_one_line_naming_it(tmp_path, name, content):
    path = _write(tmp_path / name, content(tmp_path))
    with pytest.raises(ParamsError) as e:
        load_params(path)
    message = str(e.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for leak in ("BadZipFile", "EOFError", "UnpicklingError", "allow_pickle", "unsafe"):
        assert leak not in message
    assert e.value.__cause__ is None and e.value.__suppress_context__


@pytest.mark.parametrize("name", ["params.json", "params", "params.pickle"])
def test_unknown_suffix_names_the_expected_ones(tmp_path, name):
    path = _write(tmp_path / name, _VALID_PKL)
    with pytest.raises(ParamsError, match=r"params files must end in \.npz or \.pkl, got"):
        load_params(path)


def test_a_missing_file_is_an_os_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pkl"):
        load_params(tmp_path / "nope.pkl")
