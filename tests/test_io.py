"""Writes that land where the user meant; load_params bounded, strict and running no code."""

import codecs
import collections
import contextlib
import errno
import io
import os
import pickle
import pickletools
import socket
import stat
import struct
import subprocess
import sys
import zipfile

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
    check_weights,
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


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may give a file away")
def test_replacing_a_file_as_root_keeps_its_owner(tmp_path):
    path = tmp_path / "theirs.json"
    path.write_text("old")
    os.chown(path, 12345, 23456)
    atomic_write_text(path, "new")
    assert (path.stat().st_uid, path.stat().st_gid) == (12345, 23456)


def test_a_stream_whose_staging_fails_names_both(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fio.tempfile, "gettempdir", lambda: os.fspath(tmp_path / "gone"))
    with pytest.raises(WriteError) as e:
        atomic_write_text("-", "x")
    assert str(e.value) == (
        f"cannot write -: cannot stage it in {tmp_path / 'gone'}: No such file or directory"
    )
    assert capsys.readouterr().out == ""


def test_a_stream_gets_nothing_unless_the_content_is_whole(tmp_path, capsys):
    with pytest.raises(OSError, match="No space"):
        atomic_write("-", _full_disk)
    assert capsys.readouterr().out == ""  # not b"half"


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


def test_dev_stdout_is_this_process_stdout(capsys):
    assert fio._target("/dev/stdout", "--json").fd == 1
    assert fio._target("/dev/fd/2", "--json").fd == 2
    print("first")
    atomic_write_text("/dev/stdout", "then json\n")
    atomic_write_text("/dev/stderr", "to stderr\n")
    assert capsys.readouterr() == ("first\nthen json\n", "to stderr\n")


@pytest.mark.slow
def test_dev_stdout_redirected_to_a_file_is_written_at_its_place(tmp_path):
    # As `funcbp evaluate RUN --json /dev/stdout > out.txt`: /dev/stdout resolves to
    # out.txt, and a rename onto it would unlink the file the shell still writes to.
    script = (
        "from funcbp.io import atomic_write_text\n"
        "print('before', flush=True)\n"
        "atomic_write_text('/dev/stdout', '{}\\n')\n"
        "print('after')\n"
    )
    out = tmp_path / "out.txt"
    with open(out, "wb") as f:
        subprocess.run([sys.executable, "-c", script], stdout=f, check=True, timeout=120)
    assert out.read_text() == "before\n{}\nafter\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


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
        ("NUL", "--json {p} holds a NUL character"),
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
    elif case == "NUL":
        path = f"{tmp_path}/a\0b.json"
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
            assert str(e.value) == message.format(p=shorten(path))
        with pytest.raises(WriteError) as e:
            atomic_write_text(path, "x")
        assert "\n" not in str(e.value) and shorten(path) in str(e.value)
    finally:
        if sock is not None:
            sock.close()
    assert sorted(os.listdir(tmp_path)) == before


def test_a_read_only_file_is_refused_not_replaced(tmp_path, monkeypatch):
    path = tmp_path / "keep.json"
    path.write_text("mine")
    # Injected: root may write any file, so chmod alone proves nothing here.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: os.fspath(p) != str(path) and real_access(p, m))
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
        "under a file": f"--out {folder} is not writable: Not a directory",
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


# --- load_params: every pickle protocol, and what numpy never pickles ----------------------

EXTRA = {
    "empty": np.zeros((0, 3)),
    "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    "big_endian": np.arange(3, dtype=">f4"),
    "mask": np.array([True, False]),
}


@pytest.mark.parametrize("container", [dict, collections.OrderedDict])
@pytest.mark.parametrize("protocol", range(6))
def test_loads_every_pickle_protocol(tmp_path, protocol, container):
    data = pickle.dumps(container({**PARAMS, **EXTRA}), protocol=protocol)
    path = _write(tmp_path / "params.pkl", data)
    loaded = load_params(path)
    # As plain pickle gives them (numpy's protocols 0 to 4 drop a big-endian byte order).
    _assert_same_arrays(loaded, pickle.loads(data))
    assert loaded["fortran"].flags.f_contiguous


def test_npz_round_trips_layouts_and_byte_orders(tmp_path):
    np.savez(tmp_path / "p.npz", **PARAMS, **EXTRA)
    loaded = load_params(tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz") as expected:
        _assert_same_arrays(loaded, dict(expected))
    assert loaded["fortran"].flags.f_contiguous and loaded["W1"].flags.writeable
    from_bytes = fio.read_npz_bytes((tmp_path / "p.npz").read_bytes(), "memory.npz")
    _assert_same_arrays(from_bytes, loaded)


def _nested_key_pickle(depth: int) -> bytes:
    """{((...((),)...),): None}, ``depth`` tuples deep: 200,000 is 200 KB and crashes pickle."""
    return b"\x80\x02}" + b")" + b"\x85" * depth + b"N" + b"s" + b"."


@pytest.mark.parametrize("depth", [1_000, 60_000, 200_000])
def test_a_deeply_nested_pickle_is_refused_in_one_line(tmp_path, depth):
    path = _write(tmp_path / "k.pkl", _nested_key_pickle(depth))
    with pytest.raises(ParamsError) as e:
        load_params(path)
    assert str(e.value) == (
        f"{path}: the pickle nests more than 32 deep; a params pickle is a flat dict of arrays"
    )


def test_a_nested_pickle_really_breaks_plain_code(tmp_path):
    # The refusal above is needed: plain pickle builds the key, and any repr of it fails.
    key = next(iter(pickle.loads(_nested_key_pickle(1_000))))
    with pytest.raises(RecursionError):
        repr(key)


def test_a_pickle_of_shared_parts_is_refused(tmp_path):
    """A tuple of 1,000 references to a tuple of 1,000 ...: 15 KB that hashing never finishes."""
    data = bytearray(b"\x80\x02})q\x00")  # {, and t0 = () in memo 0
    for level in range(1, 5):
        data += b"(" + (b"h" + bytes([level - 1])) * 1000 + b"tq" + bytes([level])
    data += b"Ns."  # the last tuple as a key
    path = _write(tmp_path / "laughs.pkl", bytes(data))
    with pytest.raises(ParamsError, match=r"laughs\.pkl: the pickle holds more than 1,000,000"):
        load_params(path)


def test_many_arrays_are_not_too_many_objects(tmp_path):
    params = {f"W{i}": np.full(2, float(i)) for i in range(3000)}
    path = _write(tmp_path / "many.pkl", pickle.dumps(params, protocol=2))
    _assert_same_arrays(load_params(path), params)


_NP_RECONSTRUCT = np.zeros(0).__reduce__()[0]


@pytest.mark.parametrize(
    ("evil", "call"),
    [
        (_Reduces(np.ndarray, (1 << 40,)), "numpy.ndarray((1099511627776,))"),
        (_Reduces(codecs.encode, "x", "rot13"), "_codecs.encode(..., 'rot13')"),
        (_Reduces(bytes, 1 << 40), "bytes(1099511627776)"),
        (
            _Reduces(_NP_RECONSTRUCT, np.ndarray, (1 << 40,), b"b"),
            "_reconstruct(numpy.ndarray, (1099511627776,), b'b')",
        ),
        (_Reduces(np.dtype, [("a", "<f8")]), "numpy.dtype([('a', '<f8')])"),
    ],
    ids=["ndarray(2**40)", "rot13", "bytes(2**40)", "_reconstruct(2**40)", "struct dtype"],
)
def test_calls_numpy_never_makes_are_refused_unrun(tmp_path, evil, call):
    path = _write(tmp_path / "p.pkl", pickle.dumps({"W1": evil}, protocol=2))
    with pytest.raises(ParamsError) as e:
        load_params(path)
    message = str(e.value)
    assert message.startswith(f"{path}: refusing the pickle's call {call}"), message
    assert "\n" not in message


def test_a_pickle_cannot_rewire_an_allowed_call(tmp_path):
    # _codecs.encode, then BUILD with (None, {"_fn": None}) or with {"x": None}.
    slots = b"\x80\x02c_codecs\nencode\nN}X\x03\x00\x00\x00_fnNs\x86b."
    attrs = b"\x80\x02c_codecs\nencode\n}X\x01\x00\x00\x00xNsb."
    for name, data in (("slots.pkl", slots), ("attrs.pkl", attrs)):
        with pytest.raises(ParamsError, match=name):
            load_params(_write(tmp_path / name, data))
    assert fio._PICKLE_GLOBALS[("_codecs", "encode")]._fn is fio._latin1
    _assert_same_arrays(load_params(_write(tmp_path / "ok.pkl", pickle.dumps(PARAMS, 2))), PARAMS)


def test_a_pickle_larger_than_the_bound_is_refused_unread(tmp_path):
    path = _write(tmp_path / "p.pkl", pickle.dumps(PARAMS))
    with pytest.raises(ParamsError, match=r"p\.pkl: .* bytes is more than a params file may hold"):
        load_params(path, max_bytes=100)


class _ArrayOver:
    """Pickles as numpy pickles an array, over a bytes object the pickler memoizes."""

    def __init__(self, raw):
        self.raw = raw

    def __reduce__(self):
        state = (1, (len(self.raw) // 8,), np.dtype("f8"), False, self.raw)
        return _NP_RECONSTRUCT, (np.ndarray, (0,), b"b"), state


def test_arrays_sharing_one_buffer_count_once_each(tmp_path):
    raw = bytes(1 << 20)
    data = pickle.dumps({f"W{i}": _ArrayOver(raw) for i in range(2000)}, protocol=4)
    assert len(data) < 1.2 * len(raw)  # 2,000 arrays of 1 MiB from a 1 MiB pickle
    path = _write(tmp_path / "shared.pkl", data)
    with pytest.raises(ParamsError) as e:
        load_params(path)
    assert str(e.value) == (
        f"{path}: declares 2.0 GiB of arrays, more than the 1.0 GiB a params file may hold"
    )
    assert len(load_params(path, max_bytes=1 << 32)) == 2000  # views, nothing copied


def test_a_50_mb_param_name_is_cut_short(tmp_path):
    path = _write(tmp_path / "p.pkl", pickle.dumps({"W" * 50_000_000: np.zeros(1)}, protocol=4))
    with pytest.raises(ParamsError) as e:
        load_params(path)
    message = str(e.value)
    assert len(message) < 300 and "a param name of 50,000,000 characters" in message


# --- load_params: declared sizes checked before anything is allocated ---------------------


def _npy_header(shape, descr="<f8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def _zip(path, members, method=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def _claim_size(path, size):
    """Rewrites the zip's central directory so the (only) member claims ``size`` bytes."""
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02") + 24
    data[at : at + 4] = struct.pack("<I", size)
    path.write_bytes(bytes(data))


@pytest.fixture
def no_reads(monkeypatch):
    """Fails the test if any array data is read (so nothing was allocated for it)."""

    def read_member(*args):
        raise AssertionError("an array was read before the sizes were checked")

    monkeypatch.setattr(fio, "_read_member", read_member)


def test_a_member_declaring_2_gib_that_holds_16_bytes_is_refused(tmp_path, no_reads):
    path = _zip(tmp_path / "p.npz", [("W1.npy", _npy_header((1 << 28,)) + bytes(16))])
    with pytest.raises(ParamsError) as e:
        load_params(path)
    assert str(e.value) == (
        f"{path}: param 'W1' declares float64[268435456] (2.0 GiB), but its member holds 16 bytes"
    )


def test_a_member_claiming_more_than_deflate_can_give_is_refused(tmp_path, no_reads):
    path = tmp_path / "p.npz"
    np.savez_compressed(path, W1=np.zeros(100))
    _claim_size(path, 1 << 31)
    with pytest.raises(ParamsError, match=r"p\.npz: member 'W1' claims 2\.0 GiB from \d+ bytes"):
        load_params(path)


def test_a_consistent_file_beyond_the_bound_is_refused_unread(tmp_path, no_reads):
    path = tmp_path / "p.npz"
    np.savez_compressed(path, W1=np.zeros(1 << 18))  # 2 MiB of zeros in about 2 KB
    with pytest.raises(ParamsError) as e:
        load_params(path, max_bytes=1 << 20)
    assert str(e.value) == (
        f"{path}: declares 2.0 MiB of arrays, more than the 1.0 MiB a params file may hold"
    )


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({"W1": (4, 3), "b1": (3,)}, "param 'W1' has shape (3, 4); expected (4, 3)"),
        ({"W1": (3, 4)}, "holds unexpected 'b1'"),
        ({"W1": (3, 4), "b1": (3,), "W2": (3, 2)}, "lacks 'W2'"),
    ],
    ids=["shape", "extra", "missing"],
)
def test_shapes_are_checked_before_reading(tmp_path, no_reads, shapes, message):
    path = tmp_path / "p.npz"
    np.savez(path, W1=np.zeros((3, 4)), b1=np.zeros(3))
    with pytest.raises(ParamsError) as e:
        load_params(path, shapes=shapes)
    assert str(e.value) == f"{path}: {message}"


def test_shapes_are_checked_for_pickles(tmp_path):
    path = _write(tmp_path / "p.pkl", pickle.dumps({"W1": np.zeros((3, 4))}))
    assert load_params(path, shapes={"W1": (3, 4)})["W1"].shape == (3, 4)
    with pytest.raises(ParamsError, match=r"param 'W1' has shape \(3, 4\); expected \(4, 3\)"):
        load_params(path, shapes={"W1": (4, 3)})


@pytest.mark.parametrize(
    ("members", "method", "message"),
    [
        ([("W1.txt", b"x")], zipfile.ZIP_STORED, "member 'W1.txt' is not an .npy array"),
        (
            [("W1.npy", _npy_header((1,)) + bytes(8))] * 2,
            zipfile.ZIP_STORED,
            "member 'W1' appears twice",
        ),
        (
            [("W1.npy", _npy_header((1,)) + bytes(8))],
            zipfile.ZIP_BZIP2,
            "member 'W1' uses zip compression 12; .npz files are stored or deflated",
        ),
        (
            [("W1.npy", _npy_header((-1,)) + bytes(8))],
            zipfile.ZIP_STORED,
            "param 'W1' declares the shape (-1,)",
        ),
        (
            [("W" * 300 + ".npy", _npy_header((1,)) + bytes(8))],
            zipfile.ZIP_STORED,
            "a param name of 300 characters",
        ),
    ],
    ids=["not npy", "twice", "bzip2", "negative", "long name"],
)
def test_zip_members_a_params_file_never_has_are_refused(tmp_path, members, method, message):
    with pytest.warns(UserWarning) if len(members) == 2 else contextlib.nullcontext():
        path = _zip(tmp_path / "p.npz", members, method)
    with pytest.raises(ParamsError) as e:
        load_params(path)
    assert str(e.value).startswith(f"{path}: {message}"), str(e.value)


@pytest.mark.parametrize(
    "dtype",
    ["V8", [("a", "<f8")], "<U3", "S2", "M8[s]", "m8[s]"],
    ids=["void", "struct", "str", "bytes", "datetime", "timedelta"],
)
@pytest.mark.parametrize("suffix", [".npz", ".pkl"])
def test_dtypes_params_never_hold_are_refused_naming_the_array(tmp_path, dtype, suffix):
    array = np.zeros(2, dtype)
    path = tmp_path / f"p{suffix}"
    if suffix == ".npz":
        np.savez(path, W1=array)
    else:
        path.write_bytes(pickle.dumps({"W1": array}))
    with pytest.raises(ParamsError) as e:
        load_params(path)
    message = str(e.value)
    assert message.startswith(f"{path}: param 'W1' has dtype ") or "refusing" in message, message
    assert "params hold numbers" in message or "refusing" in message
    assert "\n" not in message


# --- only regular files are opened ---------------------------------------------------------


def _not_regular(kind, path):
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "/dev/zero":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    else:
        path.symlink_to(path.name)


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
@pytest.mark.parametrize("name", ["x.pkl", "x.npz"])
def test_only_regular_files_are_opened(tmp_path, kind, what, name):
    path = tmp_path / name
    _not_regular(kind, path)
    with pytest.raises(ParamsError) as e:
        load_params(path)
    assert str(e.value) == f"{path}: {what}, not a regular file"


@pytest.mark.timeout(30)
def test_a_file_swapped_for_a_fifo_after_the_check_is_refused_unblocked(tmp_path, monkeypatch):
    path = tmp_path / "x.pkl"
    os.mkfifo(path)
    real_stat = os.stat
    regular = os.stat_result((stat.S_IFREG | 0o644, *real_stat(path)[1:]))
    monkeypatch.setattr(os, "stat", lambda p, **kw: regular if p == path else real_stat(p, **kw))
    with pytest.raises(ParamsError, match="is a FIFO, not a regular file"):
        load_params(path)


# --- check_weights: finite real floats ------------------------------------------------------


def _with(value, index, dtype=np.float32):
    array = np.ones((2, 3), dtype)
    array[index] = value
    return array


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (_with(np.nan, (1, 2)), "param 'b2'[1, 2] is nan; weights must be finite"),
        (_with(np.inf, (0, 1), np.float64), "param 'b2'[0, 1] is inf; weights must be finite"),
        (_with(-np.inf, (1, 0), np.float16), "param 'b2'[1, 0] is -inf; weights must be finite"),
        (np.array(np.nan), "param 'b2' is nan; weights must be finite"),
        (np.ones(3, np.int32), "param 'b2' has dtype int32; weights must be real floating point"),
        (np.ones(3, bool), "param 'b2' has dtype bool; weights must be real"),
        (np.ones(3, np.uint8), "param 'b2' has dtype uint8; weights must be real"),
        (np.ones(3, complex), "param 'b2' has dtype complex128; weights must be real"),
        (np.array(["1.0"]), "param 'b2' has dtype <U3; weights must be real"),
        (np.zeros(2, [("a", "<f8")]), "param 'b2' has dtype [('a', '<f8')]; weights must"),
        (np.zeros(2, "V8"), "param 'b2' has dtype |V8; weights must be real"),
        (np.zeros(2, "M8[s]"), "param 'b2' has dtype datetime64[s]; weights must be real"),
    ],
    ids=[
        "nan",
        "inf",
        "-inf",
        "0-d nan",
        "int32",
        "bool",
        "uint8",
        "complex",
        "str",
        "struct",
        "void",
        "datetime",
    ],
)
def test_check_weights_names_the_array_and_the_first_bad_index(array, message):
    good = {"W1": np.ones((2, 2), np.float32)}
    with pytest.raises(ParamsError) as e:
        check_weights({**good, "b2": array}, "w.pkl")
    assert str(e.value).startswith(f"w.pkl: {message}"), str(e.value)


def test_check_weights_takes_finite_floats_of_every_width():
    check_weights(
        {"a": np.ones(2, np.float16), "b": np.zeros((0, 3)), "c": np.float64(1.5)}, "w.npz"
    )


def test_a_path_holding_nul_is_refused_in_one_line(tmp_path):
    with pytest.raises(ParamsError, match=r"a\\x00b\.pkl: holds a NUL character, so it names no"):
        load_params(f"{tmp_path}/a\0b.pkl")
