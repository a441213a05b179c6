"""funcbp bench: a report whose numbers agree with each other, on one init and one schedule.

No test here asserts a speed.
"""

import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcbp import bench
from funcbp.cli import main
from funcbp.data import load_for_model
from funcbp.steps import minibatch_indices, run_keys
from funcbp.zoo import deep_convnet_net, simple_convnet, two_layer_net

pytestmark = pytest.mark.slow  # the bench itself runs, briefly

# model -> (steps of the short run, the params' agreement after them)
SHORT_RUNS = {"two-layer": (30, 1e-4), "simple-convnet": (3, 1e-6)}


@pytest.fixture(scope="module", params=list(SHORT_RUNS))
def report(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    steps = SHORT_RUNS[request.param][0]
    argv = ["bench", "--model", request.param, "--steps", str(steps), "--rounds", "1"]
    argv += ["--seeds", "2", "--quick", "--out", str(out), "--json", str(out / "report.json")]
    assert main(argv) == 0
    return out, json.loads((out / "report.json").read_text())


def test_every_implementation_is_reported(report):
    _, rep = report
    names = {r["name"] for r in rep["results"]}
    expected = {"funcbp-manual", "funcbp-autodiff", "numpy-book", "funcbp-seeds2",
                "funcbp-seeds2-shared"}  # fmt: skip
    if rep["model"] == "simple-convnet":
        expected.add("jax-lax-conv")
    if importlib.util.find_spec("torch") is not None:
        expected.add("torch-eager")
    else:
        assert any("torch-eager skipped" in note for note in rep["notes"])
    assert names == expected
    assert rep["steps"] == SHORT_RUNS[rep["model"]][0] and rep["rounds"] == 1
    assert rep["device"]["platform"] == jax.devices()[0].platform and rep["device"]["cpu"]


def test_the_figures_agree_with_each_other(report):
    _, rep = report
    by_name = {r["name"]: r for r in rep["results"]}
    numpy_s = by_name["numpy-book"]["s_per_10k"]
    autodiff_s = by_name["funcbp-autodiff"]["s_per_10k"]
    steps = SHORT_RUNS[rep["model"]][0]
    assert rep["flops_per_step"] == bench.flops_per_step(bench.MODELS[rep["model"]].net)
    for r in rep["results"]:
        s, k = r["s_per_10k"], r["models"]
        assert k == (2 if r["name"].startswith("funcbp-seeds") else 1)
        assert len(r["rounds_s"]) == 1
        assert s == pytest.approx(np.median(r["rounds_s"]) * 10_000 / steps)
        assert r["steps_per_s"] == pytest.approx(k * 10_000 / s)
        assert r["speedup_vs_numpy"] == pytest.approx(k * numpy_s / s)
        assert r["vs_autodiff"] == pytest.approx(k * autodiff_s / s)
        assert r["gflops"] == pytest.approx(rep["flops_per_step"] * r["steps_per_s"] / 1e9)
        assert r["roofline_frac"] == pytest.approx(k * rep["roofline_s_per_10k"] / s)
        assert r["roofline_frac"] > 0
        assert r["peak_mem_mb"] >= 0
        assert (r["compile_s"] > 0) == r["name"].startswith(("funcbp", "jax"))  # compiled rows
    assert by_name["numpy-book"]["speedup_vs_numpy"] == pytest.approx(1.0)


def test_one_init_and_one_minibatch_schedule_for_all(report):
    _, rep = report
    # After the short run every implementation (model 0 of the ensembles) holds the same params.
    for r in rep["results"]:
        assert r["max_param_diff_vs_manual"] < SHORT_RUNS[rep["model"]][1], r["name"]


@pytest.mark.parametrize("model", list(SHORT_RUNS))
def test_every_param_moves_far_more_than_the_agreement_asked_for(model):
    # So a row that skipped an update, or got one gradient wrong, would not pass as equal.
    steps, agree = SHORT_RUNS[model]
    net = bench.MODELS[model].net
    (x, t), _ = load_for_model("mnist-5k", net.input_shape)
    keys = run_keys(0)
    params = {k: np.asarray(v) for k, v in net.init(keys.init).items()}
    idx = np.asarray(minibatch_indices(keys.data, 0, steps, bench.BATCH_SIZE, len(x)))
    trained = bench._numpy_book_train(bench.MODELS[model].book, params, x, t, idx)
    for name, value in params.items():
        assert np.max(np.abs(trained[name] - value)) > 50 * agree, name


def test_roofline_sums_the_matmuls_a_step_needs(report):
    _, rep = report
    rows = rep["matmuls"]
    assert [m["name"] for m in rows if not m["needed"]] == ["dh@W1.T"]
    assert len(rows) == 3 * (len(rep["sizes"]) - 1)  # forward, dx and dW per weighted layer
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
        (["--steps", "0"], "steps must be an integer >= 1, got 0"),
        (["--rounds", "-1"], "rounds must be an integer >= 1, got -1"),
        (["--seeds", "0"], "seeds must be an integer >= 1, got 0"),
        (["--model", "deep-convnet"], "model must be one of two-layer, simple-convnet"),
        (["--plot", "/sys/nope/b.png"], "--plot /sys/nope/b.png is not writable"),
    ],
)
def test_bad_input_is_one_line(argv, message, tmp_path, capsys):
    assert main(["bench", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"funcbp bench: error: {message}") and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("model", list(bench.MODELS))
def test_numpy_baseline_is_the_books_gradient(model):
    net, book_class = bench.MODELS[model].net, bench.MODELS[model].book
    (x, t), _ = load_for_model("mnist-5k", net.input_shape)
    x, t = x[:10].astype(np.float64), t[:10]
    rng = np.random.default_rng(0)
    params_np = {s.name: 0.1 * rng.standard_normal(s.shape) for s in net.param_specs}
    params = {k: jnp.asarray(v) for k, v in params_np.items()}
    book = book_class(params_np).gradient(x, t)
    ours = jax.jit(net.gradient)(params, jnp.asarray(x), jnp.asarray(t))
    assert set(book) == set(ours)
    for name in ours:
        np.testing.assert_allclose(book[name], ours[name], rtol=1e-8, atol=1e-12, err_msg=name)
    # The layers hold the very params arrays, as the book's do: the in-place update reaches them.
    first_layer = next(iter(book_class(params_np).layers.values()))
    assert first_layer.W is params_np["W1"]


def test_flops_formula():
    assert bench.flops_per_step() == 15_980_000
    # A deeper net: every layer's dx but the first is counted.
    net = two_layer_net(4, 3, 2)
    assert bench.flops_per_step(net, 10) == 3 * (2 * 10 * 12 + 2 * 10 * 6) - 2 * 10 * 12


def test_flops_of_the_conv_nets_by_hand():
    # SimpleConvNet, B=100: conv 1->30, 5x5 on 28x28 gives 24x24, as im2col's
    # (100*576, 25) @ (25, 30) forward and for dW (its dx is not needed); pool to
    # 30x12x12 = 4320; Affine 4320->100 and 100->10 forward, dx and dW.
    conv = 2 * (100 * 24 * 24) * 25 * 30
    assert bench.flops_per_step(simple_convnet) == 2 * conv + 3 * 2 * 100 * (4320 * 100 + 100 * 10)
    assert bench.flops_per_step(simple_convnet) == 432_600_000
    assert [name for name, *_ in bench.matmul_shapes(simple_convnet)] == [
        "col(x)@W1", "h@W2", "h@W3", "dout@W3.T", "h.T@dout",
        "dh@W2.T", "h.T@dh", "dh@W1.T", "col(x).T@dh",
    ]  # fmt: skip
    # Padding and pools: a small DeepConvNet, B=2, on 12x12. Per conv (rows, C*3*3, FN):
    # pad 1 keeps 12x12 twice, pool to 6x6, pad 1 keeps 6, pad 2 gives 8x8, pool to 4x4,
    # pad 1 twice, pool to 2x2; then Affine 5*2*2=20 -> 6 -> 10.
    convs = [(2 * 144, 9, 3), (2 * 144, 27, 3), (2 * 36, 27, 4), (2 * 64, 36, 4),
             (2 * 16, 36, 5), (2 * 16, 45, 5)]  # fmt: skip
    affines = [(2, 20, 6), (2, 6, 10)]
    each = [2 * m * k * n for m, k, n in convs + affines]
    small = deep_convnet_net((1, 12, 12), filters=(3, 4, 5), hidden_size=6)
    assert bench.flops_per_step(small, 2) == 3 * sum(each) - each[0]
