"""The run's data: data_size is the book's x_train[:N], validation its shuffle_dataset split."""

import numpy as np
import pytest

from funcbp.config import TrainConfig
from funcbp.data import load_mnist
from funcbp.splits import load_training_data, shuffle_dataset


def test_data_size_and_validation_cut_the_training_set_as_the_book_does():
    (x, t), (x_test, _) = load_mnist()
    data = load_training_data(TrainConfig(data_size=500, validation=0.2, seed=3), (784,))
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (400, 100, len(x_test))
    shuffled_x, shuffled_t = shuffle_dataset(x[:500], t[:500], 3)
    np.testing.assert_array_equal(data.x_val, shuffled_x[:100])  # the first 20% after shuffling
    np.testing.assert_array_equal(data.t_train, shuffled_t[100:])
    rows = {r.tobytes() for r in x[:500]}
    assert all(r.tobytes() in rows for r in np.concatenate([data.x_train, data.x_val]))
    assert data.held_out == "val" and list(data.sets()) == ["train", "val", "test"]
    other = load_training_data(TrainConfig(data_size=500, validation=0.2, seed=4), (784,))
    assert not np.array_equal(other.x_val, data.x_val)  # the seed shuffles
    plain = load_training_data(TrainConfig(), (784,))
    assert plain.x_val is None and plain.held_out == "test" and len(plain.x_train) == len(x)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (TrainConfig(data_size=4001), "data_size must be at most the training set's size 4000"),
        (TrainConfig(data_size=4, validation=0.1), "leaves 0 for validation and 4 for training"),
        (TrainConfig(data_size=150, validation=0.5), "batch_size must be at most .* size 75"),
    ],
)
def test_a_cut_that_leaves_too_little_is_refused(config, message):
    with pytest.raises(ValueError, match=message):
        load_training_data(config, (784,))


def test_each_sets_sha256_changes_with_its_values_shape_or_dtype():
    from funcbp.splits import Data

    x, t = np.zeros((4, 2), np.float32), np.arange(4, dtype=np.int32)
    base = Data(x, t, None, None, x[:2], t[:2]).digests()
    assert set(base) == {"train", "test"} and len(set(base.values())) == 2
    assert Data(x.copy(), t.copy(), None, None, x[:2], t[:2]).digests() == base
    for other in (
        Data(x, np.roll(t, 1), None, None, x[:2], t[:2]),  # shuffled labels
        Data(x.reshape(2, 4), t, None, None, x[:2], t[:2]),  # same bytes, other shape
        Data(x.view(np.int32), t, None, None, x[:2], t[:2]),  # same bytes, other dtype
    ):
        digests = other.digests()
        assert digests["train"] != base["train"] and digests["test"] == base["test"]
    with_val = Data(x[1:], t[1:], x[:1], t[:1], x[:2], t[:2]).digests()
    assert set(with_val) == {"train", "val", "test"}
