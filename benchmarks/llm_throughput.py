"""LLM backend throughput: the figures of the backends issue, measured side by side in one run.

    python benchmarks/llm_throughput.py                       # CPU, small Llama; writes llm_throughput.txt/.json
    python benchmarks/llm_throughput.py --device cuda --config qwen2-0.5b   # writes llm_throughput-qwen2-0.5b-cuda.*

The paper's setting: a 20-item history, 50 candidates, 21 prompts per session (no hint + 20 hints of
the default movie knowledge base). Models have random weights (nothing is downloaded): speed does
not depend on what the weights are, only on their shapes. Titles come from
``../shared/data/ml-latest-small/movies.csv`` when present, else from a synthetic list.

(a) hf backend, one session's 21 prompts: shared session prefix (computed once, KV cache reused by
    the 21 short hint suffixes) vs 21 independent full prompts (batched); target >= 5x.
(b) hf backend: one-pass ranking (label logits, shared prefix) vs generate-and-parse (greedy
    numbered list of ``GENERATE_TOKENS`` tokens, parsed); target >= 10x.
(c) openai backend against a local server answering after 50 ms: concurrency 32 vs 1; target >= 15x.
(d) (session, hint) pairs per second of every configuration above, plus the embedding backend.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import torch

# ---- config ----
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--device", default="cpu", help="torch device for the hf backend (cpu, cuda)")
parser.add_argument("--config", default="llama-small", choices=("llama-small", "qwen2-0.5b"),
                    help="model shape: a small Llama (hidden 256, 4 layers) or Qwen2-0.5B's shape (494M parameters)")
parser.add_argument("--threads", type=int, default=1,
                    help="CPU threads for torch (default 1: on a shared 2-core machine, waiting OpenMP threads "
                         "dominate small forward passes)")
parser.add_argument("--sessions", type=int, default=None, help="sessions timed per measurement")
args = parser.parse_args()

MODEL_SHAPES = {
    "llama-small": dict(model_type="llama", hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                        num_attention_heads=4, num_key_value_heads=4, vocab_size=8192),
    "qwen2-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, vocab_size=151936),
}
SHAPE = MODEL_SHAPES[args.config]
SESSIONS = args.sessions or (4 if args.device == "cpu" else 16)  # sessions per timed measurement
GENERATE_SESSIONS = 1 if args.device == "cpu" else 4
GENERATE_TOKENS = 200  # a 10-title numbered list is ~150-250 tokens
HISTORY, CANDIDATES = 20, 50
OPENAI_LATENCY_S = 0.05
OPENAI_REQUESTS = {1: 63, 32: 672}  # concurrency -> requests timed (3 and 32 sessions of 21)
SEED = 0
MOVIES_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small" / "movies.csv"
OUT = Path(__file__).with_name("llm_throughput" + ("" if (args.config, args.device) == ("llama-small", "cpu")
                                                   else f"-{args.config}-{args.device}"))
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")

torch.set_num_threads(args.threads)
os.environ.setdefault("REC_GYM_CACHE", str(Path(tempfile.gettempdir()) / "rec_gym_bench_cache"))

from rec_gym.data.types import Item  # noqa: E402
from rec_gym.knowledge.base import load_knowledge_base  # noqa: E402
from rec_gym.llm.embedding import EmbeddingBackend  # noqa: E402
from rec_gym.llm.hf import HFBackend  # noqa: E402
from rec_gym.llm.openai_compat import OpenAIBackend  # noqa: E402
from rec_gym.llm.prompts import ANSWER_PREFIX, labelled_session_prefix, render_prompt  # noqa: E402
from rec_gym.llm.protocol import RankRequest  # noqa: E402


def timed(fn, *fn_args) -> tuple[float, object]:
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn(*fn_args)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


# ---- sessions: titles, 20-item histories, 50 candidates, 21 hints ----
if MOVIES_CSV.exists():
    with open(MOVIES_CSV, encoding="utf-8") as fh:
        titles = [row["title"] for row in csv.DictReader(fh)]
    title_source = f"{MOVIES_CSV.name} ({len(titles)} titles)"
else:
    words = "Silent Crimson Hidden Broken Golden Midnight Frozen Wild Distant Burning Harbor Garden Empire Station".split()
    titles = [f"{a} {b} {n} ({1950 + n % 70})" for a in words for b in words for n in range(1, 40)]
    title_source = f"synthetic ({len(titles)} titles)"
kb = load_knowledge_base("default", "movie")
hints = [None, *kb.hints]
rng = np.random.default_rng(SEED)
n_sessions = max(SESSIONS, GENERATE_SESSIONS, 32) + 1  # +1: the warm-up session
sessions = []
for s in range(n_sessions):
    picks = rng.choice(len(titles), size=HISTORY + CANDIDATES, replace=False)
    items = [Item(str(i), titles[i]) for i in picks]
    sessions.append([RankRequest(tuple(items[:HISTORY]), tuple(items[HISTORY:]), h) for h in hints])
warmup, timed_sessions = sessions[0], sessions[1:]

# ---- tokenizer (word level, ~8k words) and model (random weights), saved like a Hub model ----
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast  # noqa: E402

split_words = pre_tokenizers.Whitespace()
prompt_texts = [labelled_session_prefix(r, [str(i) for i in range(1, CANDIDATES + 1)]) + " Hint: " + (r.hint or "")
                for r in sessions[0]] + [render_prompt(sessions[0][1]), CHAT_TEMPLATE, ANSWER_PREFIX]
vocab = {"[UNK]": 0, "[PAD]": 1, "</s>": 2}
for w in [str(i) for i in range(1, 101)] + [w for t in prompt_texts for w, _ in split_words.pre_tokenize_str(t)]:
    vocab.setdefault(w, len(vocab))
for w, _ in Counter(w for t in titles for w, _ in split_words.pre_tokenize_str(t)).most_common():
    if len(vocab) >= 8000:
        break
    vocab.setdefault(w, len(vocab))
word_tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
word_tokenizer.pre_tokenizer = split_words
tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_tokenizer, unk_token="[UNK]", pad_token="[PAD]", eos_token="</s>")
tokenizer.chat_template = CHAT_TEMPLATE
model_dir = Path(tempfile.mkdtemp(prefix="rec_gym_bench_model_"))
tokenizer.save_pretrained(model_dir)
shape = dict(SHAPE)
config = AutoConfig.for_model(shape.pop("model_type"), **shape, max_position_embeddings=4096,
                              pad_token_id=1, eos_token_id=2, bos_token_id=None, tie_word_embeddings=True)
torch.manual_seed(SEED)
AutoModelForCausalLM.from_config(config).save_pretrained(model_dir, safe_serialization=True)

one_pass = HFBackend(str(model_dir), device=args.device, local_files_only=True, batch_size=len(hints))
n_params = sum(p.numel() for p in one_pass.model.parameters())
prefix_ids, suffix_ids = one_pass.prompt_ids(sessions[0][1])
results: dict[str, float] = {}
rows: list[tuple[str, float]] = []

# ---- (a) shared prefix vs independent prompts ----
def score_sessions(backend: HFBackend, which: list[list[RankRequest]]) -> list:
    return [backend.scores(requests) for requests in which]


per_mode = {}
for share in (True, False):
    one_pass.share_prefix = share
    score_sessions(one_pass, [warmup])
    best = min(timed(score_sessions, one_pass, timed_sessions[:SESSIONS])[0] for _ in range(2))
    per_mode[share] = SESSIONS * len(hints) / best
one_pass.share_prefix = True
check_shared = one_pass.scores(timed_sessions[0])
one_pass.share_prefix = False
check_independent = one_pass.scores(timed_sessions[0])
one_pass.share_prefix = True
max_diff = max(float(np.abs(a - b).max()) for a, b in zip(check_shared, check_independent))
same_order = all(np.array_equal(np.argsort(-a, kind="stable"), np.argsort(-b, kind="stable"))
                 for a, b in zip(check_shared, check_independent))
results.update(shared_prefix_pairs_per_s=per_mode[True], independent_pairs_per_s=per_mode[False],
               shared_vs_independent=per_mode[True] / per_mode[False], shared_max_abs_logprob_diff=max_diff)
rows += [("hf one-pass, shared session prefix", per_mode[True]),
         ("hf one-pass, 21 independent prompts", per_mode[False])]

# ---- (b) one-pass ranking vs generate-and-parse ----
generator = HFBackend(str(model_dir), mode="generate", device=args.device, local_files_only=True,
                      batch_size=len(hints), max_new_tokens=GENERATE_TOKENS)
generator.rank(warmup[:2])
elapsed, generated = timed(lambda: [generator.rank(s) for s in timed_sessions[:GENERATE_SESSIONS]])
reply_tokens = [len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in generator.last_replies]
results.update(generate_pairs_per_s=GENERATE_SESSIONS * len(hints) / elapsed,
               generate_mean_reply_tokens=float(np.mean(reply_tokens)))
results["one_pass_vs_generate"] = results["shared_prefix_pairs_per_s"] / results["generate_pairs_per_s"]
rows.append((f"hf generate {GENERATE_TOKENS} tokens + parse", results["generate_pairs_per_s"]))

# ---- (c) openai backend against a local server with 50 ms latency ----
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a) -> None:
        pass

    def do_POST(self) -> None:
        prompt = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["messages"][-1]["content"]
        time.sleep(OPENAI_LATENCY_S)
        listed = re.search(r"candidate set: (.*)\. Please recommend", prompt).group(1).split("; ")
        reply = "\n".join(f"{k}. {t}" for k, t in enumerate(sorted(listed)[:10], start=1))
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply},
                                        "finish_reason": "stop"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 would refuse a burst of 32 connections


server = Server(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
flat = [r for s in timed_sessions for r in s]
for concurrency, n in OPENAI_REQUESTS.items():
    client = OpenAIBackend("bench-model", base_url=f"http://127.0.0.1:{server.server_address[1]}/v1",
                           api_key_env="REC_GYM_BENCH_UNSET_KEY", concurrency=concurrency)
    client.rank(flat[:concurrency])  # open the connections
    elapsed, answers = timed(client.rank, flat[:n])
    assert all(a is not None for a in answers) and not client.failures, client.failures
    results[f"openai_c{concurrency}_pairs_per_s"] = n / elapsed
    rows.append((f"openai, concurrency {concurrency}, {OPENAI_LATENCY_S * 1000:.0f} ms server", n / elapsed))
    client.close()
server.shutdown()
results["openai_c32_vs_c1"] = results["openai_c32_pairs_per_s"] / results["openai_c1_pairs_per_s"]

# ---- (d) plus the embedding backend (all-MiniLM-L6-v2 from its package) ----
encoder = EmbeddingBackend("all-MiniLM-L6-v2", device=args.device)
encoder.rank(warmup)
elapsed, _ = timed(lambda: [encoder.rank(s) for s in timed_sessions[:SESSIONS]])
results["embedding_pairs_per_s"] = SESSIONS * len(hints) / elapsed
rows.append(("embedding all-MiniLM-L6-v2", results["embedding_pairs_per_s"]))

# ---- report ----
device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else (platform.processor() or platform.machine())
lines = [
    f"rec_gym LLM backend throughput  (python {platform.python_version()}, torch {torch.__version__}, "
    f"{device_name}, {args.device}, {args.threads} torch thread(s), {os.cpu_count()} cpus)",
    f"model: {args.config} shape, random weights, {n_params / 1e6:.1f}M parameters, {one_pass.dtype}; "
    f"word-level tokenizer, {len(vocab)} words",
    f"prompt: {HISTORY}-item history, {CANDIDATES} candidates, {len(hints)} prompts per session; titles: {title_source}",
    f"tokens: session prefix {len(prefix_ids)}, hint suffix ~{len(suffix_ids)}; timed over {SESSIONS} sessions "
    f"(generate: {GENERATE_SESSIONS}), best of 2 for (a)",
    "",
    "(d) (session, hint) pairs per second",
    *[f"    {name:45s} {rate:>10,.1f}" for name, rate in rows],
    "",
    f"(a) shared prefix vs independent prompts      {results['shared_vs_independent']:6.1f}x  (target >= 5x)",
    f"    same candidate order: {same_order}; largest label log-prob difference {max_diff:.2e}",
    f"(b) one-pass ranking vs generate-and-parse    {results['one_pass_vs_generate']:6.1f}x  (target >= 10x)",
    f"    mean reply length {results['generate_mean_reply_tokens']:.0f} tokens (random weights write no list, so "
    "parsing finds no titles; the cost is what is measured)",
    f"(c) openai concurrency 32 vs 1                {results['openai_c32_vs_c1']:6.1f}x  (target >= 15x)",
]
OUT.with_suffix(".txt").write_text("\n".join(lines) + "\n")
OUT.with_suffix(".json").write_text(json.dumps({"config": args.config, "device": args.device, "threads": args.threads,
                                                 "parameters": n_params, **results}, indent=2) + "\n")
print("\n".join(lines))
