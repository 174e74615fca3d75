"""A recommender folder is a received file: its encoder cannot make the package fetch or read a model, its sizes
are checked before anything is allocated, its hashes before its weights are read, and saves are atomic under a
lock, so neither a SIGKILL nor two racing writers ever leave a folder that loads with mixed contents."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from rec_gym.recsys.model import CONFIG_FILE, WEIGHTS_FILE, SASRecRecommender, _config_checksum
from rec_gym.recsys.sasrec import SASRec, SASRecConfig

ROOT = Path(__file__).resolve().parents[1]


def recommender(seed: int, name: str, text_dim: int = 0, encoder: str | None = None) -> SASRecRecommender:
    torch.manual_seed(seed)
    model = SASRec(SASRecConfig(n_items=40, max_len=8, dim=16, text_dim=text_dim))
    return SASRecRecommender(model, {"dataset": name, "encoder": encoder})


def edit_config(folder: Path, change) -> None:
    """Change ``config.json`` the way a sender who knows the format would: its own checksum made to match."""
    record = json.loads((folder / CONFIG_FILE).read_text())
    change(record)
    record["config_sha256"] = _config_checksum(record)
    (folder / CONFIG_FILE).write_text(json.dumps(record))


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def refusal(folder: Path, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        SASRecRecommender.load(folder, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_saved_folder_holds_both_hashes_and_loads_the_same_weights(tmp_path):
    original = recommender(0, "A", text_dim=256, encoder="hashing")
    original.save(tmp_path / "m")
    record = json.loads((tmp_path / "m" / CONFIG_FILE).read_text())
    assert len(record["weights_sha256"]) == 64 and record["config_sha256"] == _config_checksum(record)
    loaded = SASRecRecommender.load(tmp_path / "m")
    assert loaded.weights_hash() == original.weights_hash() and loaded.encoder == "hashing"
    loaded.save(tmp_path / "m")  # a loaded model saves again to a folder that loads
    assert SASRecRecommender.load(tmp_path / "m").weights_hash() == original.weights_hash()


class CountingHub(BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        CountingHub.requests.append(self.path)
        self.send_response(404)
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hub():
    CountingHub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), CountingHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


LOAD = """
import sys
from rec_gym.recsys.model import SASRecRecommender
for folder in sys.argv[1:]:
    try:
        SASRecRecommender.load(folder)
    except ValueError as exc:
        print("refused:", exc)
"""

FETCH = """
import huggingface_hub
try:
    huggingface_hub.model_info("attacker/evil-model")
except Exception as exc:
    print(type(exc).__name__)
"""


def test_a_folder_naming_another_encoder_is_refused_without_a_single_request(tmp_path, hub):
    named = ["st:attacker/evil-model", "st:/etc"]
    for k, spec in enumerate(named):
        recommender(0, "A", text_dim=256, encoder="hashing").save(tmp_path / str(k))
        edit_config(tmp_path / str(k), lambda record: record.update(encoder=spec))
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=hub, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", LOAD, str(tmp_path / "0"), str(tmp_path / "1")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    for line, spec in zip(lines, named):
        assert line.startswith("refused:") and f'{CONFIG_FILE}: field "encoder" is {spec!r}' in line
        assert f"SASRecRecommender.load(path, encoder={spec!r})" in line
    assert CountingHub.requests == []
    # The counter sees what a fetch would send, so the zero above means something.
    subprocess.run([sys.executable, "-c", FETCH], env=env, capture_output=True, text=True, timeout=120)
    assert any("evil-model" in request for request in CountingHub.requests)


def test_an_encoder_the_caller_names_is_accepted_and_only_that_one(tmp_path):
    recommender(0, "A", text_dim=256, encoder="hashing").save(tmp_path / "m")
    edit_config(tmp_path / "m", lambda record: record.update(encoder="st:my/own-model"))
    assert SASRecRecommender.load(tmp_path / "m", encoder="st:my/own-model").encoder == "st:my/own-model"
    assert "st:my/own-model" in refusal(tmp_path / "m", encoder="st:another/model")
    edit_config(tmp_path / "m", lambda record: record.update(encoder="minilm"))  # 384-d, the model reads 256
    assert "'minilm', 384-dimensional, but \"model.text_dim\" is 256" in refusal(tmp_path / "m")


def test_a_flipped_byte_in_the_weights_or_the_config_is_refused(tmp_path):
    recommender(0, "A").save(tmp_path / "m")
    weights = tmp_path / "m" / WEIGHTS_FILE
    flip_byte(weights, weights.stat().st_size - 3)
    message = refusal(tmp_path / "m")
    assert str(weights) in message and '"weights_sha256"' in message
    recommender(0, "A").save(tmp_path / "m")
    config = tmp_path / "m" / CONFIG_FILE
    config.write_text(config.read_text().replace('"dropout": 0.2', '"dropout": 0.3'))
    assert '"config_sha256"' in refusal(tmp_path / "m")


def test_a_folder_saved_before_the_file_hashes_is_checked_by_its_weights_hash(tmp_path):
    recommender(0, "A").save(tmp_path / "m")
    config = tmp_path / "m" / CONFIG_FILE
    record = json.loads(config.read_text())
    del record["weights_sha256"], record["config_sha256"]
    config.write_text(json.dumps(record))
    assert SASRecRecommender.load(tmp_path / "m").weights_hash() == record["weights_sha256_16"]
    weights = tmp_path / "m" / WEIGHTS_FILE
    flip_byte(weights, weights.stat().st_size - 3)
    assert '"weights_sha256_16"' in refusal(tmp_path / "m")


@pytest.mark.parametrize("field, value, expected", [
    ("n_items", 64_000_000_000, '"model.n_items" is 64000000000; it must be an integer from 2 to 5,000,000'),
    ("dim", 100_000, '"model.dim" is 100000'),
    ("n_blocks", True, '"model.n_blocks" is True'),
    ("max_len", 8.0, '"model.max_len" is 8.0'),
    ("dropout", float("nan"), '"model.dropout" is nan'),
])
def test_sizes_and_types_in_the_config_are_refused_before_anything_is_allocated(tmp_path, field, value, expected):
    recommender(0, "A").save(tmp_path / "m")
    edit_config(tmp_path / "m", lambda record: record["model"].update({field: value}))
    assert expected in refusal(tmp_path / "m")


def test_a_model_over_the_parameter_limit_is_refused_in_one_line(tmp_path):
    recommender(0, "A").save(tmp_path / "m")
    edit_config(tmp_path / "m", lambda record: record["model"].update(n_items=5_000_000, dim=1_024))
    assert "MAX_PARAMETERS" in refusal(tmp_path / "m")


def test_weights_of_one_save_with_the_config_of_another_are_refused(tmp_path):
    recommender(0, "A").save(tmp_path / "a")
    recommender(1, "B").save(tmp_path / "b")
    (tmp_path / "b" / WEIGHTS_FILE).replace(tmp_path / "a" / WEIGHTS_FILE)
    assert '"weights_sha256"' in refusal(tmp_path / "a")


# Built before any writer is forked: a forked child then only saves (torch's thread pools do not survive a fork).
MODELS = {f"model-{seed}": recommender(seed, f"model-{seed}") for seed in (0, 1)}
HASHES = {name: model.weights_hash() for name, model in MODELS.items()}


def _save_forever(folder: str, names: list[str], rounds: int) -> None:
    for k in range(rounds):
        MODELS[names[k % len(names)]].save(folder)


def _check(folder: Path) -> str:
    """``"ok"`` for a folder that loads with one save's weights and config, ``"refused"`` for a clear refusal."""
    try:
        loaded = SASRecRecommender.load(folder)
    except ValueError as exc:
        assert str(folder) in str(exc) and "\n" not in str(exc)
        return "refused"
    assert loaded.weights_hash() == HASHES[loaded.info["dataset"]], "weights of one save, config of another"
    return "ok"


def test_saves_killed_at_random_moments_never_leave_a_folder_that_loads_mixed(tmp_path):
    fork = multiprocessing.get_context("fork")
    folder = tmp_path / "m"
    rng = random.Random(0)
    outcomes = []
    for _ in range(20):
        writer = fork.Process(target=_save_forever, args=(str(folder), sorted(MODELS), 10_000))
        writer.start()
        deadline = time.monotonic() + 60
        while not (folder / CONFIG_FILE).exists():
            assert writer.is_alive() and time.monotonic() < deadline
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        assert writer.exitcode == -signal.SIGKILL
        outcomes.append(_check(folder))
    assert set(outcomes) <= {"ok", "refused"}


def test_two_racing_writers_and_a_reader_never_see_a_mixed_folder(tmp_path):
    fork = multiprocessing.get_context("fork")
    folder = tmp_path / "m"
    MODELS["model-0"].save(folder)
    writers = [fork.Process(target=_save_forever, args=(str(folder), [name], 40)) for name in sorted(MODELS)]
    for writer in writers:
        writer.start()
    outcomes = []
    deadline = time.monotonic() + 120
    while any(writer.is_alive() for writer in writers) or not outcomes:
        assert time.monotonic() < deadline
        outcomes.append(_check(folder))
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    # Readers take the folder's shared lock, so among processes that follow it nothing is ever refused either.
    assert set(outcomes) == {"ok"}


def test_a_cached_recommender_that_fails_its_checks_is_said_once_and_trained_again(capsys):
    from rec_gym.data import load_dataset
    from rec_gym.llm import make_llm
    from rec_gym.recsys.reward import knowledge_recommender
    from rec_gym.storage import cache_dir

    dataset = load_dataset("synthetic", n_train=40)
    kwargs = {"encoder": "hashing", "n_texts": 2, "training": {"epochs": 1}, "progress": False}
    first = knowledge_recommender(dataset, make_llm("simulated"), **kwargs)
    (folder,) = cache_dir("recsys").iterdir()
    weights = folder / WEIGHTS_FILE
    flip_byte(weights, weights.stat().st_size - 3)
    capsys.readouterr()
    again = knowledge_recommender(dataset, make_llm("simulated"), **kwargs)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("rec_gym:")]
    assert len(lines) == 1 and "trained again" in lines[0] and str(weights) in lines[0]
    assert again.weights_hash() == first.weights_hash()  # seeded training, saved again intact
    assert SASRecRecommender.load(folder).weights_hash() == first.weights_hash()
