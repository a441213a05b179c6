"""funcbp bench: a report whose numbers agree with each other, on one init and one schedule.

No test here asserts a speed.
"""

import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcbp import bench, book_numpy
from funcbp.cli import main
from funcbp.data import load_mnist
from funcbp.zoo import two_layer

pytestmark = pytest.mark.slow  # the bench itself runs, briefly


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = ["bench", "--steps", "30", "--rounds", "1", "--seeds", "2", "--quick"]
    assert main([*argv, "--out", str(out), "--json", str(out / "report.json")]) == 0
    return out, json.loads((out / "report.json").read_text())


def test_every_implementation_is_reported(report):
    _, rep = report
    names = {r["name"] for r in rep["results"]}
    expected = {"funcbp-manual", "funcbp-autodiff", "numpy-book", "funcbp-seeds2",
                "funcbp-seeds2-shared"}  # fmt: skip
    if importlib.util.find_spec("torch") is not None:
        expected.add("torch-eager")
    else:
        assert any("torch-eager skipped" in note for note in rep["notes"])
    assert names == expected
    assert rep["steps"] == 30 and rep["rounds"] == 1
    assert rep["device"]["platform"] == jax.devices()[0].platform and rep["device"]["cpu"]


def test_the_figures_agree_with_each_other(report):
    _, rep = report
    by_name = {r["name"]: r for r in rep["results"]}
    numpy_s = by_name["numpy-book"]["s_per_10k"]
    autodiff_s = by_name["funcbp-autodiff"]["s_per_10k"]
    assert rep["flops_per_step"] == 2 * 100 * (2 * 784 * 50 + 3 * 50 * 10) == 15_980_000
    for r in rep["results"]:
        s, k = r["s_per_10k"], r["models"]
        assert k == (2 if r["name"].startswith("funcbp-seeds") else 1)
        assert len(r["rounds_s"]) == 1
        assert s == pytest.approx(np.median(r["rounds_s"]) * 10_000 / 30)
        assert r["steps_per_s"] == pytest.approx(k * 10_000 / s)
        assert r["speedup_vs_numpy"] == pytest.approx(k * numpy_s / s)
        assert r["vs_autodiff"] == pytest.approx(k * autodiff_s / s)
        assert r["gflops"] == pytest.approx(rep["flops_per_step"] * r["steps_per_s"] / 1e9)
        assert r["roofline_frac"] == pytest.approx(k * rep["roofline_s_per_10k"] / s)
        assert r["roofline_frac"] > 0
        assert r["peak_mem_mb"] >= 0
        assert (r["compile_s"] > 0) == r["name"].startswith("funcbp")
    assert by_name["numpy-book"]["speedup_vs_numpy"] == pytest.approx(1.0)


def test_one_init_and_one_minibatch_schedule_for_all(report):
    _, rep = report
    # After 30 steps every implementation (model 0 of the ensembles) holds the same params.
    for r in rep["results"]:
        assert r["max_param_diff_vs_manual"] < 1e-4, r["name"]


def test_roofline_sums_the_five_matmuls_a_step_needs(report):
    _, rep = report
    rows = rep["matmuls"]
    assert [m["name"] for m in rows if not m["needed"]] == ["dh@W1.T"]
    assert len(rows) == 6
    needed_flops = sum(2 * np.prod(m["shape"]) for m in rows if m["needed"])
    assert needed_flops == rep["flops_per_step"]
    for m in rows:
        assert m["best_us"] == min(m["numpy_us"], m["xla_us"]) > 0
    assert rep["roofline_s_per_10k"] == pytest.approx(
        sum(m["best_us"] for m in rows if m["needed"]) * 1e-6 * 10_000
    )


def test_plot_is_a_png(report):
    out, rep = report
    assert rep["plot"] == str(out / "bench.png")
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp files


def test_table_and_json_to_stdout_write_only_what_is_asked_for(
    report, monkeypatch, tmp_path, capsys
):
    _, rep = report
    monkeypatch.setattr(bench, "run_bench", lambda *args, **kwargs: json.loads(json.dumps(rep)))
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["results"] == rep["results"]
    assert not list(tmp_path.iterdir())  # no bench.png unasked
    plot = tmp_path / "b.png"
    assert main(["bench", "--plot", str(plot)]) == 0
    table = capsys.readouterr().out
    assert "numpy-book" in table and "roofline" in table and f"wrote {plot}" in table
    assert [p.name for p in tmp_path.iterdir()] == ["b.png"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "0"], "--steps must be > 0, got 0"),
        (["--rounds", "-1"], "--rounds must be > 0, got -1"),
        (["--seeds", "0"], "--seeds must be > 0, got 0"),
        (["--plot", "/sys/nope/b.png"], "--plot /sys/nope is not writable"),
    ],
)
def test_bad_input_is_one_line(argv, message, tmp_path, capsys):
    assert main(["bench", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"funcbp bench: error: {message}") and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_numpy_baseline_is_the_books_gradient():
    (x, t), _ = load_mnist("mnist-5k")
    x, t = x[:10].astype(np.float64), t[:10]
    rng = np.random.default_rng(0)
    shapes = {"W1": (784, 50), "b1": (50,), "W2": (50, 10), "b2": (10,)}
    params_np = {k: 0.1 * rng.standard_normal(shape) for k, shape in shapes.items()}
    params = {k: jnp.asarray(v) for k, v in params_np.items()}
    book = book_numpy.TwoLayerNet(params_np).gradient(x, t)
    ours = jax.jit(two_layer.gradient)(params, jnp.asarray(x), jnp.asarray(t))
    assert set(book) == set(ours)
    for name in ours:
        np.testing.assert_allclose(book[name], ours[name], rtol=1e-10, atol=1e-13)
    # The layers hold the very params arrays, as the book's do.
    assert book_numpy.TwoLayerNet(params_np).layers["Affine1"].W is params_np["W1"]


def test_flops_formula():
    assert bench.flops_per_step() == 15_980_000
    # A deeper net: every layer's dx but the first is counted.
    assert bench.flops_per_step(10, (4, 3, 2)) == 3 * (2 * 10 * 12 + 2 * 10 * 6) - 2 * 10 * 12
