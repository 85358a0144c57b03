"""The sequence model (rerankdb.sequence): it learns what follows what, and its weights travel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rerankdb import sequence

N_ITEMS = 40
SMALL = sequence.SequenceConfig(
    dim=16, max_len=8, blocks=1, heads=2, dropout=0.0, lr=0.01, max_epochs=40, patience=40
)


def cycles(users: int, length: int, seed: int = 0) -> list[list[int]]:
    """Each user walks the items in order (1, 2, ..., 40, 1, ...) from a random start."""
    rng = np.random.default_rng(seed)
    return [[(start + t) % N_ITEMS + 1 for t in range(length)] for start in rng.integers(0, N_ITEMS, users)]


@pytest.fixture(scope="module")
def trained() -> tuple[sequence.SequenceModel, sequence.TrainReport]:
    torch.set_num_threads(1)
    return sequence.train(cycles(200, 12), N_ITEMS, SMALL)


def test_it_learns_what_follows_what(trained: tuple[sequence.SequenceModel, sequence.TrainReport]) -> None:
    model, report = trained
    assert report.held_out_ndcg > 0.9, report.history
    probes = [[5, 6, 7], [39, 40, 1], [12]]
    users = sequence.user_vectors(model, probes)
    items = sequence.item_vectors(model)
    assert [int(np.argmax(items @ u)) + 1 for u in users] == [8, 2, 13]
    assert np.allclose(np.linalg.norm(users, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(items, axis=1), 1, atol=1e-5)


def test_an_untrained_model_does_not_know(
    trained: tuple[sequence.SequenceModel, sequence.TrainReport],
) -> None:
    """The check above can fail: an untrained model is near chance (1/40 items)."""
    _, report = trained
    assert report.history[0] < report.held_out_ndcg
    fresh = sequence.SequenceModel(N_ITEMS, SMALL)
    users = sequence.user_vectors(fresh, [[5, 6, 7], [39, 40, 1], [12]])
    items = sequence.item_vectors(fresh)
    assert [int(np.argmax(items @ u)) + 1 for u in users] != [8, 2, 13]


def test_weights_travel_as_bytes(trained: tuple[sequence.SequenceModel, sequence.TrainReport]) -> None:
    model, _ = trained
    again = sequence.SequenceModel.from_state(model.state())
    probes = [[3, 4], list(range(1, 30))]  # longer than max_len: the newest 8 are read
    assert np.allclose(sequence.user_vectors(again, probes), sequence.user_vectors(model, probes), atol=1e-6)
    assert np.array_equal(sequence.item_vectors(again), sequence.item_vectors(model))


def test_an_empty_sequence_has_no_vector(
    trained: tuple[sequence.SequenceModel, sequence.TrainReport],
) -> None:
    model, _ = trained
    got = sequence.user_vectors(model, [[], [1]])
    assert not got[0].any() and got[1].any()


def test_a_new_item_gets_its_text_part() -> None:
    """An item the model was not trained with still gets a vector: its projected text."""
    rng = np.random.default_rng(1)
    text = rng.standard_normal((N_ITEMS + 1, 6)).astype(np.float32)  # the last: an item added later
    config = sequence.SequenceConfig(**{**SMALL.__dict__, "max_epochs": 3})
    model, _ = sequence.train(cycles(100, 10), N_ITEMS, config, text=text[:N_ITEMS])
    got = sequence.new_item_vectors(model, text[N_ITEMS:])
    with torch.no_grad():
        want = torch.nn.functional.normalize(model.project(torch.from_numpy(text[N_ITEMS])), dim=0)
    assert np.allclose(got[0], want.numpy(), atol=1e-6)
    assert not sequence.new_item_vectors(sequence.SequenceModel(N_ITEMS, SMALL), text[:1]).any()
    # Trained items start from their text and learn a correction.
    trained_item = sequence.item_vectors(model)[0]
    assert 0.2 < float(trained_item @ sequence.new_item_vectors(model, text[:1])[0]) < 1 - 1e-4


def test_bce_and_sampled_softmax_train(monkeypatch: pytest.MonkeyPatch) -> None:
    config = sequence.SequenceConfig(**{**SMALL.__dict__, "max_epochs": 2, "loss": "bce"})
    _, report = sequence.train(cycles(50, 10), N_ITEMS, config)
    assert report.epochs == 2
    monkeypatch.setattr(sequence, "FULL_SOFTMAX_ITEMS", 10)
    monkeypatch.setattr(sequence, "SAMPLED_NEGATIVES", 16)
    _, report = sequence.train(
        cycles(50, 10), N_ITEMS, sequence.SequenceConfig(**{**SMALL.__dict__, "max_epochs": 2})
    )
    assert report.epochs == 2 and np.isfinite(report.history).all()
    with pytest.raises(ValueError, match="loss must be one of softmax, bce"):
        sequence.train(cycles(5, 5), N_ITEMS, sequence.SequenceConfig(loss="mse"))


def test_the_attention_pass_gives_the_same_vectors(
    trained: tuple[sequence.SequenceModel, sequence.TrainReport],
) -> None:
    model, _ = trained
    seqs = cycles(9, 5, seed=3) + cycles(3, 20, seed=4) + [[]]
    vectors, attention = sequence.user_vectors_with_attention(model, seqs)
    items = model.item_vectors()
    with torch.no_grad():
        plain = torch.nn.functional.normalize(
            model.last(torch.from_numpy(sequence.windows(seqs, model.config.max_len)), items), dim=-1
        )
    np.testing.assert_allclose(vectors[:-1], plain[:-1].numpy(), atol=1e-6)
    # One weight per item read (the newest max_len), summing to 1; none for an empty sequence.
    for seq, att in zip(seqs, attention, strict=True):
        assert len(att) == min(len(seq), model.config.max_len)
        if seq:
            assert att.sum() == pytest.approx(1.0, abs=1e-5) and (att >= 0).all()


def test_items_outside_the_model_read_their_text_part() -> None:
    rng = np.random.default_rng(1)
    text = rng.standard_normal((N_ITEMS, 6)).astype(np.float32)
    model, _ = sequence.train(
        cycles(30, 6), N_ITEMS, sequence.SequenceConfig(dim=8, max_len=6, max_epochs=2), text=text
    )
    extra = rng.standard_normal((2, 6)).astype(np.float32)
    table = sequence.input_table(model, extra)
    assert table.shape == (N_ITEMS + 3, 8)
    with torch.no_grad():
        np.testing.assert_allclose(
            table[N_ITEMS + 1 :].numpy(), model.project(torch.from_numpy(extra)).numpy(), atol=1e-6
        )
    # The new item as the newest of a sequence changes the vector; its index is past the model's.
    a = sequence.user_vectors(model, [[1, 2, N_ITEMS + 1]], items=table)[0]
    b = sequence.user_vectors(model, [[1, 2, N_ITEMS + 2]], items=table)[0]
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5) and not np.allclose(a, b)
    # Text of another dimension: no text part (zero input, zero vector for the item).
    other = sequence.input_table(model, np.ones((1, 5), dtype=np.float32))
    assert not other[N_ITEMS + 1].any()
    assert not sequence.new_item_vectors(model, np.ones((1, 5), dtype=np.float32)).any()
