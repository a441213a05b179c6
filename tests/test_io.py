"""Writes that land where the user meant; load_params bounded, strict and running no code."""

import collections
import errno
import io
import os
import pickle
import pickletools
import socket
import stat
import subprocess

import numpy as np
import pytest

from funcbp import io as fio
from funcbp.io import (
    ParamsError,
    WriteError,
    atomic_path,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    check_output_path,
    check_writable,
    load_params,
    shorten,
)

# --- atomic writes --------------------------------------------------------------


def test_atomic_writes_replace_the_file_and_leave_no_temp_file(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    assert atomic_write_text(path, "first") == path
    atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    umask = os.umask(0o22)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # as open() would make it
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


def _one_line_naming(error, path):
    message = str(error)
    assert "\n" not in message and str(path) in message, message
    return message


def test_a_symlink_is_written_through_and_stays_a_link(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "report.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(os.path.join("real", "report.json"))  # relative, into another folder
    assert check_output_path(link, "--json") == target
    atomic_write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == os.path.join("real", "report.json")
    assert target.read_text() == "new"
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["report.json"]


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "made.json")
    atomic_write_text(link, "x")
    assert link.is_symlink() and (tmp_path / "made.json").read_text() == "x"


def test_replacing_a_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "private.json"
    path.write_text("old")
    path.chmod(0o600)
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_fifo_is_written_as_a_stream_never_replaced(tmp_path):
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    assert check_output_path(fifo, "--json") == fifo
    # A reader opened without blocking first, so the write's open returns at once;
    # the text fits in the pipe's buffer, so nothing here can wait.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        atomic_write_text(fifo, '{"ok": true}\n')
        assert os.read(reader, 1 << 16) == b'{"ok": true}\n'
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_devices_are_written_through_never_replaced():
    # Guard first: only a path classified as a stream is written. A regression
    # that took /dev/full for a file would, as root, rename a file onto it.
    for device in ("/dev/null", "/dev/full"):
        if not stat.S_ISCHR(os.stat(device).st_mode):
            pytest.skip(f"{device} is not a character device here")
        assert fio._target(device, "--json").stream
    atomic_write_text("/dev/null", "x")
    with pytest.raises(WriteError) as e:
        atomic_write_text("/dev/full", "x" * 100_000)  # a real ENOSPC
    assert e.value.errno == errno.ENOSPC
    assert _one_line_naming(e.value, "/dev/full") == (
        "cannot write /dev/full: No space left on device"
    )
    for device in ("/dev/null", "/dev/full"):
        assert stat.S_ISCHR(os.lstat(device).st_mode)


def test_dash_writes_to_stdout(capsys):
    assert check_output_path("-", "--json") == "-"
    atomic_write_text("-", "to stdout\n")
    with atomic_path("-") as tmp:
        tmp.write_bytes(b"and through a path\n")
    assert capsys.readouterr().out == "to stdout\nand through a path\n"


def _socket(tmp_path):
    path = tmp_path / "s"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.fspath(path))
    return path, sock


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty", "--json: expected a file path, got ''"),
        ("folder", "--json {p} is a folder; expected a file"),
        ("trailing slash", "--json {p} names a folder; expected a file"),
        ("socket", "--json {p} is a socket; expected a file, FIFO or device"),
        ("symlink loop", "--json {p} is a symlink loop"),
        ("under a file", "--json {p} cannot be used: Not a directory"),
    ],
)
def test_paths_that_cannot_take_a_file_are_refused_in_one_line(tmp_path, case, message):
    sock = None
    if case == "empty":
        path = ""
    elif case == "folder":
        path = tmp_path
    elif case == "trailing slash":
        path = f"{tmp_path / 'new'}{os.sep}"
    elif case == "socket":
        path, sock = _socket(tmp_path)
    elif case == "symlink loop":
        path = tmp_path / "a.json"
        path.symlink_to("b.json")
        (tmp_path / "b.json").symlink_to("a.json")
    else:
        (tmp_path / "file").write_text("x")
        path = tmp_path / "file" / "out.json"
    before = sorted(os.listdir(tmp_path))
    try:
        for attempt in (lambda: check_output_path(path, "--json"),):
            with pytest.raises(WriteError) as e:
                attempt()
            assert str(e.value) == message.format(p=path)
        with pytest.raises(WriteError) as e:
            atomic_write_text(path, "x")
        assert "\n" not in str(e.value) and os.fspath(path) in str(e.value)
    finally:
        if sock is not None:
            sock.close()
    assert sorted(os.listdir(tmp_path)) == before


def test_a_read_only_file_is_refused_not_replaced(tmp_path, monkeypatch):
    path = tmp_path / "keep.json"
    path.write_text("mine")
    # Injected: root may write any file, so chmod alone proves nothing here.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: p != path and real_access(p, m))
    with pytest.raises(WriteError, match=r"--plot .*keep\.json is read-only"):
        check_output_path(path, "--plot")
    with pytest.raises(WriteError, match="read-only"):
        atomic_write_text(path, "theirs")
    assert path.read_text() == "mine"


def test_check_output_path_probes_the_nearest_folder(tmp_path, monkeypatch):
    deep = tmp_path / "a" / "b" / "out.png"
    assert check_output_path(deep, "--plot") == deep
    assert not (tmp_path / "a").exists()  # checking creates nothing

    def read_only(folder, *args):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(fio, "_create_temp", read_only)
    with pytest.raises(WriteError) as e:
        check_output_path(deep, "--plot")
    assert str(e.value) == f"--plot {deep} is not writable: Read-only file system"


# --- write failures name the file ----------------------------------------------------


def _full_disk(f):
    f.write(b"half")
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["write", "fsync", "rename"])
def test_a_failed_write_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch, where):
    path = atomic_write_text(tmp_path / "checkpoint.json", "old")
    write = lambda f: f.write(b"new")  # noqa: E731
    if where == "write":
        write = _full_disk
    elif where == "fsync":
        monkeypatch.setattr(os, "fsync", lambda fd: _full_disk(io.BytesIO()))
    else:

        def replace(src, dst):
            raise OSError(errno.EROFS, "Read-only file system", os.fspath(src))

        monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(WriteError) as e:
        atomic_write(path, write)
    message = _one_line_naming(e.value, path)
    assert message.startswith(f"cannot write {path}: ") and ".tmp" not in message
    assert isinstance(e.value, OSError) and e.value.errno in (errno.ENOSPC, errno.EROFS)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json"]


def test_an_error_about_another_file_is_not_relabelled(tmp_path):
    with pytest.raises(FileNotFoundError) as e, atomic_path(tmp_path / "graph.svg"):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "dot")
    assert not isinstance(e.value, WriteError)
    assert list(tmp_path.iterdir()) == []


# --- check_writable: a folder that takes the run --------------------------------------


def test_check_writable_creates_and_probes_leaving_nothing(tmp_path):
    folder = tmp_path / "runs" / "r1"
    assert check_writable(folder, "--out", need_bytes=1024) == folder
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("case", ["empty", "a file", "under a file", "no space", "full disk"])
def test_check_writable_refuses_in_one_line(tmp_path, monkeypatch, case):
    folder, need = tmp_path / "run", 0
    if case == "empty":
        folder = ""
    elif case == "a file":
        folder.write_text("x")
    elif case == "under a file":
        (tmp_path / "f").write_text("x")
        folder = tmp_path / "f" / "run"
    elif case == "no space":
        need = 1 << 70  # no disk has a zebibyte free
    else:
        monkeypatch.setattr(os, "fsync", lambda fd: _full_disk(io.BytesIO()))
    with pytest.raises(WriteError) as e:
        check_writable(folder, "--out", need_bytes=need)
    message = _one_line_naming(e.value, folder)
    expected = {
        "empty": "--out: expected a folder, got ''",
        "a file": f"--out {folder} is a file; expected a folder",
        "under a file": f"--out {folder} cannot be created: Not a directory",
        "no space": f"--out {folder} has ",
        "full disk": f"--out {folder} is not writable: No space left on device",
    }[case]
    assert message.startswith(expected), message
    if case == "no space":
        assert message.endswith("free; this needs about 1073741824.0 TiB")
        assert e.value.errno == errno.ENOSPC
        assert list(folder.iterdir()) == []  # the probe is gone


def test_check_writable_compares_the_free_space(tmp_path, monkeypatch):
    real = os.statvfs(tmp_path)

    class Nearly:  # 10 blocks of 4 KiB free
        f_bavail, f_frsize = 10, 4096

    monkeypatch.setattr(os, "statvfs", lambda p: Nearly)
    check_writable(tmp_path, "--out", need_bytes=40960)
    with pytest.raises(WriteError, match=r"has 40\.0 KiB free; this needs about 40\.0 KiB"):
        check_writable(tmp_path, "--out", need_bytes=40961)
    assert real.f_frsize > 0


# --- messages ----------------------------------------------------------------------------


def test_shorten_keeps_one_short_line():
    assert shorten("runs/a") == "runs/a"
    assert shorten("a\nb") == "a\\nb"
    long = "x" * 50_000_000 + "\n"
    cut = shorten(long, 100)
    assert "\n" not in cut and len(cut) < 140 and "50,000,001 characters" in cut
    assert cut.endswith("\\n")


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
