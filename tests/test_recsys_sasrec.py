"""SASRec, popularity and `rec-gym train-recsys`: what the recommenders learn, score and store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rec_gym.cli import main
from rec_gym.data import load_dataset
from rec_gym.recsys import PopularityRecommender, SASRec, SASRecConfig, SASRecRecommender, evaluate_recommender, train_sasrec
from rec_gym.recsys.model import candidate_ranks
from rec_gym.recsys.training import _sampled_softmax, training_sequences, training_windows

N_ITEMS = 60


def _sequential_folder(folder: Path, n_sessions: int = 240, length: int = 6, n_items: int = N_ITEMS) -> Path:
    """Sessions that walk the catalog in steps of one: after item k comes item k + 1 (mod n_items). Item ids are
    their indices; genres and years are uninformative. Split 200/20/20; ``length`` items per session."""
    folder.mkdir()
    with open(folder / "items.jsonl", "w") as fh:
        for i in range(n_items):
            fh.write(json.dumps({"item_id": i, "title": f"Item {i}", "year": 1990 + i % 3, "genres": ["Drama"]}) + "\n")
    rng = np.random.default_rng(3)
    with open(folder / "sessions.jsonl", "w") as fh:
        for s in range(n_sessions):
            start = int(rng.integers(n_items))
            walk = [(start + k) % n_items for k in range(length)]
            split = "train" if s < 200 else ("val" if s < 220 else "test")
            fh.write(json.dumps({"session_id": f"s{s}", "history": walk[:-1], "target": walk[-1], "split": split}) + "\n")
    return folder


@pytest.fixture
def walk_dataset(tmp_path):
    return load_dataset(str(_sequential_folder(tmp_path / "walk")), n_candidates=20)


@pytest.mark.parametrize("loss", ["sampled-softmax", "bce"])
def test_sasrec_learns_the_next_item_of_a_sequence_that_popularity_cannot_see(walk_dataset, loss):
    model = train_sasrec(walk_dataset, SASRecConfig(N_ITEMS, max_len=8, dim=32, n_blocks=1, dropout=0.1), epochs=15,
                         batch_size=32, lr=1e-2, loss=loss, negatives=16, progress=False)
    assert model.info["training"]["loss"] == loss
    sasrec = evaluate_recommender(model, walk_dataset, "test")
    popularity = evaluate_recommender(PopularityRecommender(walk_dataset), walk_dataset, "test")
    assert sasrec["sessions"] == 20
    assert sasrec["HR@10 all"] >= 0.9 and sasrec["NDCG@10 candidates"] >= 0.8
    assert popularity["HR@10 all"] <= 0.5
    assert sasrec["NDCG@10 candidates"] > popularity["NDCG@10 candidates"] + 0.3


def test_the_model_is_causal_a_later_item_never_changes_an_earlier_output():
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(30, max_len=6, dim=16, dropout=0.0)).eval()
    a = torch.tensor([[0, 3, 4, 5, 6, 7]])
    b = torch.tensor([[0, 3, 4, 5, 6, 29]])
    with torch.no_grad():
        ha, hb = model(a), model(b)
    torch.testing.assert_close(ha[:, :5], hb[:, :5])
    assert not torch.allclose(ha[:, 5], hb[:, 5])


def test_training_reads_train_targets_and_held_out_histories_but_never_a_held_out_target(walk_dataset):
    rows, sequences = training_sequences(walk_dataset)
    for row, seq in zip(rows, sequences):
        if walk_dataset.split[row] == "train":
            assert seq[-1] == walk_dataset.target[row] and len(seq) == 6
        else:
            assert walk_dataset.target[row] not in seq.tolist() and len(seq) == 5


def test_training_reads_the_longer_histories_of_the_same_sessions_and_refuses_other_sessions(tmp_path):
    folder = _sequential_folder(tmp_path / "walk")
    short = load_dataset(str(folder), n_candidates=20, max_history=2)
    longer = load_dataset(str(folder), n_candidates=20)
    assert max(len(short.history_of(r)) for r in range(len(short))) == 2
    rows, sequences = training_sequences(short, longer)
    for row, seq in zip(rows, sequences):
        expected = longer.history_of(int(row))
        if short.split[row] == "train":
            expected = np.append(expected, short.target[row])
        np.testing.assert_array_equal(seq, expected)
    assert max(len(s) for s in sequences) == 6
    pop = PopularityRecommender(short, sessions=longer)
    assert pop.item_scores.astype(int).sum() == sum(len(s) for s in sequences)
    model = train_sasrec(short, SASRecConfig(N_ITEMS, max_len=8, dim=16), sessions=longer, epochs=1, progress=False)
    assert model.info["training"]["longest_sequence"] == 6 and model.info["training"]["transitions"] == sum(
        len(s) - 1 for s in sequences)
    fewer = load_dataset(str(folder), n_candidates=20, n_train=50)
    with pytest.raises(ValueError, match="max_history"):
        training_sequences(short, fewer)
    with pytest.raises(ValueError, match="loss="):
        train_sasrec(short, loss="softmax", epochs=1, progress=False)
    assert train_sasrec(short, negatives=10_000, epochs=1, progress=False).info["training"]["negatives"] == N_ITEMS
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        train_sasrec(short, epochs=0, progress=False)


def test_windows_cover_every_transition_of_a_long_sequence_once():
    sequences = [np.arange(23), np.arange(100, 105), np.arange(200, 202)]
    rows, windows = training_windows(np.array([7, 8, 9]), sequences, max_len=5)
    assert all(2 <= len(w) <= 6 for w in windows)
    transitions = [(int(a), int(b)) for w in windows for a, b in zip(w[:-1], w[1:])]
    expected = [(int(a), int(b)) for s in sequences for a, b in zip(s[:-1], s[1:])]
    assert sorted(transitions) == sorted(expected)  # each once, none made up at a window's edge
    assert rows.tolist() == [7] * 5 + [8, 9]
    np.testing.assert_array_equal(windows[0], np.arange(17, 23))  # the newest window first


def test_sampled_softmax_never_counts_a_positive_drawn_as_its_own_negative():
    embed = torch.nn.Embedding(10, 4)
    torch.manual_seed(0)
    hidden = torch.randn(3, 4)
    positive = torch.tensor([1, 2, 3])
    negatives = torch.tensor([1, 2, 3, 4])
    loss = _sampled_softmax(hidden, positive, negatives, embed)
    with torch.no_grad():
        logits = hidden @ embed.weight.T
    # Row k: its positive, once, against the other rows' positives and item 4; its own draw is masked out.
    expected = sum(float(torch.logsumexp(logits[k, [1, 2, 3, 4]], 0) - logits[k, int(positive[k])]) for k in range(3))
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    only_itself = _sampled_softmax(hidden, positive[:1], positive[:1], embed)
    assert float(only_itself.detach()) == pytest.approx(0.0, abs=1e-6)


def test_training_is_seeded(walk_dataset):
    config = SASRecConfig(N_ITEMS, max_len=8, dim=16)
    first = train_sasrec(walk_dataset, config, epochs=2, seed=1, progress=False)
    again = train_sasrec(walk_dataset, config, epochs=2, seed=1, progress=False)
    other = train_sasrec(walk_dataset, config, epochs=2, seed=2, progress=False)
    assert first.weights_hash() == again.weights_hash() != other.weights_hash()


def test_a_saved_recommender_loads_without_pickle_and_scores_the_same(walk_dataset, tmp_path):
    model = train_sasrec(walk_dataset, SASRecConfig(N_ITEMS, max_len=8, dim=16), epochs=2, progress=False)
    out = model.save(tmp_path / "model")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    loaded = SASRecRecommender.load(out)
    histories = [walk_dataset.history_of(r) for r in range(5)]
    np.testing.assert_array_equal(model.scores(histories), loaded.scores(histories))
    assert loaded.weights_hash() == model.weights_hash()
    (out / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        SASRecRecommender.load(out)


def test_popularity_ranks_the_most_frequent_item_first_and_ties_break_by_candidate_order(walk_dataset):
    pop = PopularityRecommender(walk_dataset)
    counts = np.bincount(np.concatenate([walk_dataset.history[walk_dataset.history >= 0],
                                         walk_dataset.target[walk_dataset.indices("train")]]), minlength=N_ITEMS)
    assert int(np.argmax(pop.item_scores)) in np.flatnonzero(counts == counts.max()).tolist()
    flat = np.zeros((1, N_ITEMS), dtype=np.float32)
    row = np.array([0])
    pos = int(walk_dataset.target_pos[0])
    assert candidate_ranks(flat, walk_dataset, row)[0] == pos + 1  # all tied: the target's place in the order


def test_train_recsys_command_writes_weights_config_and_metrics(walk_dataset, tmp_path, capsys):
    folder = tmp_path / "walk"
    out = tmp_path / "sasrec"
    assert main(["train-recsys", "--dataset", str(folder), "--out", str(out), "--epochs", "2", "--dim", "16",
                 "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["n_items"] == N_ITEMS and config["model"]["text_dim"] == 0
    assert set(config["metrics"]["test"]) == {"sasrec", "popularity"}
    assert config["metrics"]["test"]["sasrec"]["sessions"] == 20
    assert "saved" in capsys.readouterr().out
    assert main(["train-recsys", "--dataset", str(folder), "--out", str(out), "--epochs", "0"]) == 2


def test_train_recsys_reads_longer_histories_than_the_envs_keep(tmp_path):
    folder = _sequential_folder(tmp_path / "long", n_sessions=230, length=31, n_items=100)  # 30 history items; envs keep 20
    common = ["train-recsys", "--dataset", str(folder), "--epochs", "1", "--dim", "16", "--validate-every", "0",
              "--no-progress"]
    for history, expected in (("25", 26), ("20", 21)):  # history items plus the target
        out = tmp_path / f"sasrec-{history}"
        assert main(common + ["--out", str(out), "--train-history", history]) == 0
        training = json.loads((out / "config.json").read_text())["training"]
        assert training["longest_sequence"] == expected and training["loss"] == "sampled-softmax"
    assert main(common + ["--out", str(tmp_path / "bad"), "--train-history", "0"]) == 2
    assert not (tmp_path / "bad").exists()
