"""Preference texts (simulated writer, factor-based prompt, caching), knowledge-augmented SASRec, the reward model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rec_gym.data import load_dataset
from rec_gym.data.embeddings import HashingEncoder
from rec_gym.feedback.table import ProvenanceMismatch
from rec_gym.llm import make_llm
from rec_gym.llm.protocol import RankRequest
from rec_gym.metrics import ndcg_at_k
from rec_gym.recsys import SASRecConfig, evaluate_recommender, train_sasrec
from rec_gym.recsys.model import candidate_ranks
from rec_gym.recsys.preferences import (generate_preferences, parse_preference, preference_prompt, preference_request,
                                        preference_text)
from rec_gym.recsys.reward import RecsysRewardModel, RecsysScoreTable, knowledge_recommender

from conftest import write_session_folder

GENRES = ["Comedy", "Drama", "Horror", "Sci-Fi", "Western", "Musical"]


class CountingWriter:
    """A writer backend that forwards to the simulated one and counts the requests it is asked to write."""

    def __init__(self) -> None:
        self.inner = make_llm("simulated")
        self.name = self.inner.name
        self.written = 0

    def rank(self, requests: list[RankRequest]):
        return self.inner.rank(requests)

    def write(self, requests):
        self.written += len(requests)
        return self.inner.write(requests)


@pytest.fixture
def tiny(tmp_path):
    items = [{"item_id": i, "title": f"Film {i} ({1960 + i})", "year": 1960 + i, "genres": [GENRES[i % 4]],
              "creator": f"Director {i % 3}"} for i in range(60)]
    return load_dataset(str(write_session_folder(tmp_path / "tiny", items)))


def test_the_prompt_names_the_history_the_factors_and_the_required_structure(tiny):
    history = tiny.session_items(0)[0]
    prompt = preference_prompt(history, "movie")
    assert all(item.title in prompt for item in history)
    assert "genres, directors, era, themes, popularity" in prompt and "Factors:" in prompt and "Preference:" in prompt
    assert "developers" in preference_prompt(history, "game")


def test_the_facts_prompt_adds_each_items_genres_and_creator_under_its_own_template_version(tiny):
    from rec_gym.recsys.preferences import FACTS_TEMPLATE_VERSION, TEMPLATE_VERSION

    history = tiny.session_items(0)[0]
    prompt = preference_prompt(history, "movie", "facts")
    for item in history:
        assert f"{item.title} [{', '.join(item.genres)}; {item.creator}]" in prompt
    assert preference_prompt(history, "movie") == preference_prompt(history, "movie", "titles")
    assert "[" not in preference_prompt(history, "movie").split(" in order: ")[1].split(". First name")[0]
    titles, facts = (preference_request(history, "movie", prompt=p) for p in ("titles", "facts"))
    assert (titles.template_version, facts.template_version) == (TEMPLATE_VERSION, FACTS_TEMPLATE_VERSION)
    with pytest.raises(ValueError, match="prompt='full': use one of"):
        preference_prompt(history, "movie", "full")


def test_the_profile_prompt_adds_the_historys_counts_after_the_titles():
    from rec_gym.data.types import Item
    from rec_gym.recsys.preferences import TEMPLATE_VERSIONS

    rows = [("Comedy", "Ada", 1984, "popular"), ("Comedy", "Ada", 1986, "obscure"), ("Drama", "Bo", 1991, "popular")]
    history = [Item(str(i), f"Film {i}", {"genres": (g,), "creator": c, "year": y, "tier": t})
               for i, (g, c, y, t) in enumerate(rows)]
    prompt = preference_prompt(history, "movie", "profile")
    assert ("in order: Film 0; Film 1; Film 2. Most frequent among them: genres Comedy (2), Drama (1); "
            "director Ada (2 of 3); the 1980s (2 of 3); 1 obscure, 2 popular. First name") in prompt
    assert preference_request(history, "movie", prompt="profile").template_version == TEMPLATE_VERSIONS["profile"]
    assert len(set(TEMPLATE_VERSIONS.values())) == 3


def test_parse_preference_accepts_the_structure_and_rejects_anything_else():
    assert parse_preference("Factors: genres, era\nPreference: Likes 1990s comedies.").factors == ("genres", "era")
    assert parse_preference("<think>hmm</think>Factors: genres\n\nPreference: Comedies.").preference == "Comedies."
    assert parse_preference("Preference: Comedies.\nFactors: genres") is None
    assert parse_preference("Factors:\nPreference: Comedies.") is None
    assert parse_preference("I think this user likes comedies.") is None
    assert preference_text("I think this user likes comedies.") == "I think this user likes comedies."


def test_simulated_texts_are_deterministic_varied_and_faithful_at_temperature_zero(tiny):
    llm = make_llm("simulated")
    history = tiny.session_items(3)[0]
    top_genre = max(GENRES, key=lambda g: sum(g in item.genres for item in history))
    greedy = {llm.write([preference_request(history, "movie", s, temperature=0.0)])[0] for s in range(5)}
    assert len(greedy) == 1 and top_genre in next(iter(greedy))
    sampled = [llm.write([preference_request(history, "movie", s, temperature=1.0)])[0] for s in range(10)]
    assert sampled == [llm.write([preference_request(history, "movie", s, temperature=1.0)])[0] for s in range(10)]
    assert len(set(sampled)) >= 4


def test_simulated_texts_include_wrong_unhelpful_and_broken_ones_in_documented_shares(tiny):
    replies = generate_preferences(make_llm("simulated"), tiny, range(len(tiny)), n=10, progress=False)
    flat = [t for r in replies for t in r]
    broken = np.mean([parse_preference(t) is None for t in flat])
    unhelpful = np.mean(["Factors: taste" in t for t in flat])
    wrong = 0
    for row, texts in enumerate(replies):
        present = {g for item in tiny.session_items(row)[0] for g in item.genres}
        wrong += sum(any(g in t for g in ("Western", "Musical", "Documentary")) and not present & {"Western", "Musical"}
                     for t in texts)
    assert 0.04 <= broken <= 0.18 and 0.08 <= unhelpful <= 0.25 and wrong / len(flat) >= 0.05


def test_preference_texts_are_cached_per_sample(tiny, tmp_path):
    writer = CountingWriter()
    first = generate_preferences(writer, tiny, [0, 1, 2], n=4, cache=tmp_path / "responses.sqlite", progress=False)
    assert writer.written == 12 and [len(r) for r in first] == [4, 4, 4]
    again = generate_preferences(writer, tiny, [0, 1, 2], n=5, cache=tmp_path / "responses.sqlite", progress=False)
    assert writer.written == 15  # only the fifth sample of each session was new
    assert [r[:4] for r in again] == first


def _genre_text_dataset(tmp_path):
    """Histories of random items; the target's genre is what a text can tell and the history cannot."""
    folder = tmp_path / "genre"
    folder.mkdir()
    with open(folder / "items.jsonl", "w") as fh:
        for i in range(60):
            fh.write(json.dumps({"item_id": i, "title": f"Item {i}", "genres": [GENRES[i % 6]]}) + "\n")
    rng = np.random.default_rng(5)
    with open(folder / "sessions.jsonl", "w") as fh:
        for s in range(300):
            chosen = rng.choice(60, size=5, replace=False).tolist()
            split = "train" if s < 250 else "test"
            fh.write(json.dumps({"session_id": f"s{s}", "history": chosen[:-1], "target": chosen[-1], "split": split}) + "\n")
    return load_dataset(str(folder), n_candidates=30)


def test_knowledge_augmented_sasrec_learns_what_a_text_adds(tmp_path):
    dataset = _genre_text_dataset(tmp_path)
    encoder = HashingEncoder(64)

    def text_of(row):
        return encoder.encode([f"prefers {dataset.catalog[int(dataset.target[row])].genres[0]}"])

    texts = {int(r): text_of(r) for r in dataset.indices("train")}
    model = train_sasrec(dataset, SASRecConfig(60, max_len=8, dim=32, dropout=0.1, text_dim=64), epochs=30,
                         batch_size=32, lr=5e-3, texts=texts, encoder="hashing-64", text_dropout=0.2, progress=False)
    test = dataset.indices("test")
    with_text = evaluate_recommender(model, dataset, "test", np.concatenate([text_of(r) for r in test]))
    without = evaluate_recommender(model, dataset, "test", np.full((len(test), 64), np.nan, dtype=np.float32))
    assert with_text["NDCG@10 candidates"] > without["NDCG@10 candidates"] + 0.15
    # No text at all gives the same scores as NaN rows: the adaptor's output is masked out.
    histories = [dataset.history_of(int(r)) for r in test[:4]]
    np.testing.assert_allclose(model.scores(histories, np.full((4, 64), np.nan, dtype=np.float32)),
                               _plain_scores(model, histories), rtol=1e-5)


def _plain_scores(model, histories):
    import torch

    from rec_gym.recsys.sasrec import left_padded

    with torch.no_grad():
        hidden = model.model(torch.from_numpy(left_padded(histories, model.config.max_len)))[:, -1]
        return (hidden @ model.model.item_vectors().T).numpy()


def test_reward_model_scores_a_text_by_the_recommenders_ndcg_and_caches_it(tiny, tmp_path):
    recommender = knowledge_recommender(tiny, make_llm("simulated"), encoder="hashing", n_texts=3,
                                        training={"epochs": 2}, progress=False)
    assert recommender.config.text_dim == 256 and recommender.encoder == "hashing"
    path = tmp_path / "scores.npz"
    model = RecsysRewardModel(recommender, tiny, table_path=path)
    text = "Factors: genres\nPreference: The user prefers Horror movies."
    score = model.score(5, text)
    embedding = HashingEncoder().encode([preference_text(text)])
    rank = candidate_ranks(recommender.scores([tiny.history_of(5)], embedding), tiny, np.array([5]))[0]
    assert score == pytest.approx(ndcg_at_k(int(rank), 10))
    model.score(5, None)
    assert len(model.table.entries) == 2
    model.table.save()
    reread = RecsysRewardModel(recommender, tiny, table_path=path)
    assert reread.table.entries == model.table.entries
    with pytest.raises(ProvenanceMismatch, match="recommender"):
        RecsysScoreTable({**model.table.provenance, "recommender": "another"}, path)
    # The graded score: the target's log-softmax over the session's candidates, with the text and without.
    rows, texts = [5, 5, 6], [text, None, text]
    vectors = np.vstack([embedding, np.full((1, 256), np.nan, dtype=np.float32), embedding])
    all_scores = recommender.scores([tiny.history_of(r) for r in rows], vectors).astype(np.float64)
    expected = []
    for k, r in enumerate(rows):
        s = all_scores[k, tiny.candidates_of(r)]
        expected.append(s[int(tiny.target_pos[r])] - np.log(np.exp(s).sum()))
    log_probs = model.log_probabilities(rows, texts)
    np.testing.assert_allclose(log_probs, expected, rtol=1e-5)
    assert (log_probs < 0).all() and log_probs[0] != log_probs[1]
    # The ranks those scores imply are kept: session 6's is now a lookup, equal to ranking afresh.
    assert len(model.table.entries) == 3
    assert model.ranks([6], [text])[0] == candidate_ranks(all_scores[2:], tiny, np.array([6]))[0]
    # The same training is not repeated: the cached recommender is loaded.
    again = knowledge_recommender(tiny, make_llm("simulated"), encoder="hashing", n_texts=3, training={"epochs": 2},
                                  progress=False)
    assert again.weights_hash() == recommender.weights_hash()


def test_the_recsys_ranker_gives_a_hint_env_the_recommenders_reward(tiny):
    import gymnasium as gym

    import rec_gym  # noqa: F401
    from rec_gym.recsys.ranker import RecsysRanker

    recommender = knowledge_recommender(tiny, make_llm("simulated"), encoder="hashing", n_texts=3,
                                        training={"epochs": 2}, progress=False)
    env = gym.make("Re2LLM-Synthetic-v0", dataset=tiny, llm=RecsysRanker(recommender, tiny.catalog),
                   observation="profile")
    reward_model = RecsysRewardModel(recommender, tiny)
    task = env.unwrapped.task
    for seed in range(4):
        _, info = env.reset(seed=seed)
        _, reward, *_, info = env.step(seed + 1)
        row = int(task.rows[info["session_index"]])
        hint = task.kb.hint_for_action(seed + 1)
        expected = reward_model.scores([row, row], [hint, None])
        assert info["rank"] == reward_model.ranks([row], [hint])[0]
        assert reward == pytest.approx(expected[0] - expected[1])
    with pytest.raises(ValueError, match="knowledge-augmented"):
        RecsysRanker(train_sasrec(tiny, epochs=1, progress=False), tiny.catalog)


def test_train_recsys_knowledge_writes_a_model_the_reward_model_loads(tiny, tmp_path):
    from rec_gym.cli import main
    from rec_gym.recsys import SASRecRecommender

    out = tmp_path / "ka"
    assert main(["train-recsys", "--dataset", str(tmp_path / "tiny"), "--out", str(out), "--knowledge",
                 "--encoder", "hashing", "--n-texts", "2", "--epochs", "2", "--dim", "16", "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["text_dim"] == 256 and config["encoder"] == "hashing"
    assert config["preference_texts"]["n"] == 2
    assert set(config["metrics"]["test"]) == {"sasrec", "popularity", "sasrec_with_text"}
    model = RecsysRewardModel(SASRecRecommender.load(out), tiny)
    assert 0.0 <= model.score(0, "Factors: genres\nPreference: The user prefers Horror movies.") <= 1.0


def test_reward_source_recsys_makes_the_hint_env_read_the_recommenders_ranks(tiny, tmp_path):
    import gymnasium as gym

    import rec_gym  # noqa: F401
    from rec_gym.recsys.ranker import RecsysRanker

    recommender = knowledge_recommender(tiny, make_llm("simulated"), encoder="hashing", n_texts=3,
                                        training={"epochs": 2}, progress=False)
    recommender.save(tmp_path / "ka")
    env = gym.make("Re2LLM-Synthetic-v0", dataset=tiny, observation="profile", reward_source="recsys",
                   recommender=str(tmp_path / "ka"))
    task = env.unwrapped.task
    assert isinstance(task.backend, RecsysRanker) and task.table.provenance["backend"].startswith("recsys-sasrec-ka(")
    reward_model = RecsysRewardModel(recommender, tiny)
    for seed in range(3):
        env.reset(seed=seed)
        _, reward, *_, info = env.step(seed + 2)
        row = int(task.rows[info["session_index"]])
        expected = reward_model.scores([row, row], [task.kb.hint_for_action(seed + 2), None])
        assert reward == pytest.approx(expected[0] - expected[1])
    with pytest.raises(ValueError, match="reward_source='recsys'"):
        gym.make("Re2LLM-Synthetic-v0", dataset=tiny, observation="profile", recommender=str(tmp_path / "ka"))
    with pytest.raises(ValueError, match="reward_source='model'"):
        gym.make("Re2LLM-Synthetic-v0", dataset=tiny, observation="profile", reward_source="model")


_TEXTS_DIGEST = """
import hashlib, json
from rec_gym.data import load_dataset
from rec_gym.llm import make_llm
from rec_gym.recsys.preferences import generate_preferences
dataset = load_dataset("synthetic", use_cache=False)
texts = generate_preferences(make_llm("simulated"), dataset, dataset.indices("train")[:300], n=10, temperature=1.0,
                             progress=False)
print(hashlib.sha256(json.dumps(texts).encode()).hexdigest())
"""


def test_simulated_texts_are_the_same_in_processes_with_different_string_hashing(tmp_path):
    import os
    import subprocess
    import sys

    digests = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "REC_GYM_CACHE": str(tmp_path / f"cache-{hash_seed}")}
        out = subprocess.run([sys.executable, "-c", _TEXTS_DIGEST], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        digests.append(out.stdout.strip())
    assert len(digests[0]) == 64 and digests[0] == digests[1]


def test_the_env_asks_its_writer_with_the_facts_prompt_when_told(tiny):
    import gymnasium as gym

    class PromptWriter(CountingWriter):
        def write(self, requests):
            self.prompts = [r.messages[-1][1] for r in requests]
            return super().write(requests)

    writer = PromptWriter()
    env = gym.make("RLRF4Rec-Synthetic-v0", dataset=tiny, writer=writer, n_texts=2, prompt="facts",
                   recsys_training={"epochs": 1}, split="test")
    history = tiny.session_items(int(env.unwrapped.task.rows[-1]))[0]
    assert writer.prompts[-1] == preference_prompt(history, tiny.domain, "facts")
    with pytest.raises(ValueError, match="prompt"):
        gym.make("RLRF4Rec-Synthetic-v0", dataset=tiny, writer=writer, n_texts=2, prompt="summary")
