"""K models' results: per model, per configuration, ranked on validation, as lines."""

import pytest

from funcbp import summary

MODELS = [{"seed": s, "lr": lr} for s, lr in enumerate([0.1, 0.1, 0.01, 0.01])]
RESULTS = {"train_acc": [0.9, 0.8, 0.6, 0.5], "val_acc": [0.7, 0.6, 0.8, 0.9], "test_acc": 0.5}


def test_each_model_keeps_its_values_beside_its_results():
    rows = summary.per_model(MODELS, RESULTS)
    assert rows[2] == {"seed": 2, "lr": 0.01, "train_acc": 0.6, "val_acc": 0.8, "test_acc": 0.5}
    assert summary.final(rows[:1]) == {"train_acc": 0.9, "val_acc": 0.7, "test_acc": 0.5}
    assert summary.final(rows)["val_acc"] == pytest.approx({"mean": 0.75, "std": 0.1290994})


def test_configurations_are_ranked_on_validation_never_on_test():
    rows = summary.per_model(MODELS, RESULTS)
    configurations = summary.by_configuration(rows, ["seed", "lr"])
    assert [c["values"] for c in configurations] == [{"lr": 0.1}, {"lr": 0.01}]
    assert [c["models"] for c in configurations] == [[0, 1], [2, 3]]
    assert summary.ranking(configurations) == [1, 0]  # val 0.85 beats 0.65; train says otherwise
    no_validation = summary.by_configuration(
        summary.per_model(MODELS, {"train_acc": 0.5, "test_acc": [0.1, 0.2, 0.3, 0.4]}), ["lr"]
    )
    assert summary.ranking(no_validation) is None


def test_lines_name_each_model_by_what_tells_it_apart():
    rows = summary.per_model(MODELS, RESULTS)
    lines = summary.lines(rows, ["seed", "lr"], "runs/x")
    assert lines[0] == "seed 0, lr 0.1: train acc 0.9000, val acc 0.7000, test acc 0.5000"
    assert lines[-1].startswith("runs/x: 4 models: train acc 0.7000 ± 0.1826, val acc")
    one = summary.lines(rows[:1], [], "")
    assert one == ["train acc 0.9000, val acc 0.7000, test acc 0.5000"]
