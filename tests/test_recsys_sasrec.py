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
from rec_gym.recsys.training import training_sequences

N_ITEMS = 60


def _sequential_folder(folder: Path, n_sessions: int = 240) -> Path:
    """Sessions that walk the catalog in steps of one: after item k comes item k + 1 (mod 60). Item ids are
    their indices; genres and years are uninformative. Split 200/20/20."""
    folder.mkdir()
    with open(folder / "items.jsonl", "w") as fh:
        for i in range(N_ITEMS):
            fh.write(json.dumps({"item_id": i, "title": f"Item {i}", "year": 1990 + i % 3, "genres": ["Drama"]}) + "\n")
    rng = np.random.default_rng(3)
    with open(folder / "sessions.jsonl", "w") as fh:
        for s in range(n_sessions):
            start = int(rng.integers(N_ITEMS))
            walk = [(start + k) % N_ITEMS for k in range(6)]
            split = "train" if s < 200 else ("val" if s < 220 else "test")
            fh.write(json.dumps({"session_id": f"s{s}", "history": walk[:-1], "target": walk[-1], "split": split}) + "\n")
    return folder


@pytest.fixture
def walk_dataset(tmp_path):
    return load_dataset(str(_sequential_folder(tmp_path / "walk")), n_candidates=20)


def test_sasrec_learns_the_next_item_of_a_sequence_that_popularity_cannot_see(walk_dataset):
    model = train_sasrec(walk_dataset, SASRecConfig(N_ITEMS, max_len=8, dim=32, n_blocks=1, dropout=0.1), epochs=15,
                         batch_size=32, lr=1e-2, progress=False)
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
