"""Items' own texts in the knowledge-augmented SASRec: a preference text reaches the items whose texts it names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rec_gym.data import load_dataset
from rec_gym.data.embeddings import HashingEncoder
from rec_gym.recsys import SASRecConfig, SASRecRecommender, evaluate_recommender, train_sasrec
from rec_gym.recsys.model import CONFIG_FILE, _config_checksum
from rec_gym.recsys.sasrec import SASRec

GENRES = ["Comedy", "Drama", "Horror", "Western", "Musical", "War"]
ENCODER = HashingEncoder(64)


def _held_out_items_dataset(tmp_path):
    """60 items, 10 per genre. Histories are random; the target is an item of a random genre, and only the text
    says which. Training targets come from items 0..39; test targets only from items 40..59, which no training
    session ever has as a target, so their ID embeddings learn nothing about being a next item."""
    folder = tmp_path / "held-out"
    folder.mkdir()
    with open(folder / "items.jsonl", "w") as fh:
        for i in range(60):
            fh.write(json.dumps({"item_id": i, "title": f"Film {i}", "genres": [GENRES[i % 6]]}) + "\n")
    rng = np.random.default_rng(0)
    with open(folder / "sessions.jsonl", "w") as fh:
        for s in range(330):
            split = "train" if s < 300 else "test"
            pool = np.arange(40) if split == "train" else np.arange(40, 60)
            target = int(rng.choice(pool))
            history = [int(h) for h in rng.choice(np.setdiff1d(np.arange(60), [target]), size=4, replace=False)]
            fh.write(json.dumps({"session_id": f"s{s}", "history": history, "target": target, "split": split}) + "\n")
    return load_dataset(str(folder), n_candidates=30)


def _text_of(dataset, row):
    return ENCODER.encode([f"prefers {dataset.catalog[int(dataset.target[row])].genres[0]} movies"])


def _train(dataset, item_text: bool):
    texts = {int(r): _text_of(dataset, r) for r in dataset.indices("train")}
    item_texts = ENCODER.encode([item.text() for item in dataset.catalog.items]) if item_text else None
    config = SASRecConfig(60, max_len=8, dim=32, dropout=0.1, text_dim=64, item_text_dim=64 if item_text else 0)
    return train_sasrec(dataset, config, epochs=25, batch_size=32, lr=5e-3, texts=texts, encoder="hashing-64",
                        text_dropout=0.2, item_texts=item_texts, progress=False)


def test_a_text_reaches_items_never_seen_as_targets_only_through_their_own_texts(tmp_path):
    dataset = _held_out_items_dataset(tmp_path)
    test = dataset.indices("test")
    texts = np.concatenate([_text_of(dataset, r) for r in test])
    none = np.full_like(texts, np.nan)
    with_items = _train(dataset, item_text=True)
    id_only = _train(dataset, item_text=False)
    kar = evaluate_recommender(with_items, dataset, "test", texts)["NDCG@10 candidates"]
    kar_none = evaluate_recommender(with_items, dataset, "test", none)["NDCG@10 candidates"]
    ids = evaluate_recommender(id_only, dataset, "test", texts)["NDCG@10 candidates"]
    # A text naming the target's genre finds held-out items of that genre through their texts; an ID-only
    # model learnt the genre only as the IDs of training targets, none of which is a test target.
    assert kar > kar_none + 0.15
    assert kar > ids + 0.15


def test_before_training_the_match_term_is_a_scaled_cosine_of_the_two_texts():
    torch.manual_seed(0)
    items = ["Film 1; genres: Comedy", "Film 2; genres: Horror", "Film 3; genres: Western", "Film 4; genres: War"]
    model = SASRec(SASRecConfig(4, max_len=4, dim=16, dropout=0.0, text_dim=64, item_text_dim=64, match_dim=512)).eval()
    model.set_item_text(ENCODER.encode(items))
    tokens = torch.tensor([[0, 0, 1, 2]])
    text = torch.from_numpy(ENCODER.encode(["prefers Western movies"]))
    with torch.no_grad():
        gain = (model(tokens, text, torch.tensor([True]))[:, -1] - model(tokens)[:, -1]) @ model.item_vectors().T
    assert int(gain.argmax()) == 2  # the item whose text says Western
    # Without a text, or with has_text False, the match term is exactly zero.
    with torch.no_grad():
        off = model(tokens, text, torch.tensor([False]))
    torch.testing.assert_close(off, model(tokens))


def test_item_texts_are_saved_with_the_weights_and_a_folder_without_the_new_fields_loads(tmp_path):
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(4, max_len=4, dim=16, text_dim=64, item_text_dim=64))
    model.set_item_text(ENCODER.encode(["a", "b", "c", "d"]))
    saved = SASRecRecommender(model, {"encoder": "hashing-64"})
    saved.save(tmp_path / "kar")
    loaded = SASRecRecommender.load(tmp_path / "kar")
    histories = [np.array([0, 1]), np.array([2])]
    texts = ENCODER.encode(["a", "d"])
    np.testing.assert_array_equal(loaded.scores(histories, texts), saved.scores(histories, texts))
    assert float(loaded.model.item_text_vectors.abs().sum()) > 0

    plain = SASRecRecommender(SASRec(SASRecConfig(4, max_len=4, dim=16)), {"encoder": None})
    plain.save(tmp_path / "old")
    record = json.loads((tmp_path / "old" / CONFIG_FILE).read_text())
    for field in ("item_text_dim", "match_dim"):
        del record["model"][field]
    record["config_sha256"] = _config_checksum(record)
    (tmp_path / "old" / CONFIG_FILE).write_text(json.dumps(record))
    assert SASRecRecommender.load(tmp_path / "old").config.item_text_dim == 0


def test_item_text_width_other_than_the_text_width_is_refused(tmp_path):
    with pytest.raises(ValueError, match="item_text_dim=32 must be 0 or text_dim=64"):
        SASRecConfig(4, text_dim=64, item_text_dim=32)
    model = SASRec(SASRecConfig(4, max_len=4, dim=16, text_dim=64, item_text_dim=64))
    SASRecRecommender(model, {"encoder": "hashing-64"}).save(tmp_path / "kar")
    record = json.loads((tmp_path / "kar" / CONFIG_FILE).read_text())
    record["model"]["item_text_dim"] = 32
    record["config_sha256"] = _config_checksum(record)
    (tmp_path / "kar" / CONFIG_FILE).write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"model.item_text_dim\" is 32; it must be 0 or"):
        SASRecRecommender.load(tmp_path / "kar")
