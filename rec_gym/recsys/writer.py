"""A preference writer small enough to train on a CPU: a tiny causal language model that learns to write
preference texts, so that RLRF4Rec's loop (sample, score with the recommender, pair, DPO) can close.

What it is:

- the model: a Llama-architecture causal LM whose shape ships with the package
  (``rec_gym/recsys/writer_config.json``: 3 layers, 128 wide, about 0.7 million parameters with its
  vocabulary: small enough that fine-tuning and DPO rounds take minutes on a shared CPU core), initialised
  at random and trained from scratch; nothing is downloaded;
- the tokenizer: byte-level BPE trained from scratch with the ``tokenizers`` library on the texts the
  writer will read and write (the preference prompts and the teacher's replies), with ``<s>``, ``</s>``
  and ``<pad>``; its chat template (:data:`CHAT_TEMPLATE`) keeps of a preference prompt the history's
  list only (the instructions never change), then ``Answer:``. The loop asks with the ``"facts"`` prompt
  (:func:`rec_gym.recsys.preferences.preference_prompt`): each title with the item's genres, creator and
  tier, the knowledge of the catalog that an LLM brings and a model trained from scratch lacks;
- supervised fine-tuning (:func:`supervised_fine_tune`): next-token cross-entropy on the reply tokens of
  a teacher writer's samples (the simulated writer's, at temperature 1: every kind of text, in its
  shares), the prompt tokens masked out.

The result is a folder (``config.json``, ``model.safetensors``, tokenizer files) that ``make_llm("hf:<folder>")``
loads with ``trust_remote_code`` off, and that :func:`rec_gym.recsys.dpo.dpo_train` tunes; in an env, give
it the prompt it was trained with (``prompt="facts"``). It reads only its prompt: it knows nothing of a
synthetic session's latent preference, and what it makes of the listed facts (which genres are the most
frequent, which title came last) it must learn from the teacher's texts. It is a stand-in that makes the
loop's machinery run and measurable on a CPU; what it learns says nothing about what a real LLM would.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from tqdm.auto import tqdm

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

WRITER_CONFIG = Path(__file__).with_name("writer_config.json")
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>")
# The system turn and the instructions are the same for every preference request: the writer reads the
# history's list of a preference prompt (rec_gym.recsys.preferences.preference_prompt), any other user turn
# whole, which keeps its inputs short enough to train on a CPU.
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}"
                 "{% set c = m['content'] %}{% if ' in order: ' in c and '. First name' in c %}"
                 "{{ c.split(' in order: ')[1].split('. First name')[0] }}{% else %}{{ c }}{% endif %}{{ '\\n' }}"
                 "{% elif m['role'] == 'assistant' %}Answer:\n{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
                 "{% if add_generation_prompt %}Answer:\n{% endif %}")
MAX_NEW_TOKENS = 72


def train_tokenizer(texts: Sequence[str], vocab_size: int = 2000) -> "PreTrainedTokenizerFast":
    """Byte-level BPE trained from scratch on ``texts`` (no download), with the writer's chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=int(vocab_size), special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(list(texts), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def new_writer(tokenizer: "PreTrainedTokenizerFast", seed: int = 0) -> "PreTrainedModel":
    """A randomly initialised causal LM of the shape in :data:`WRITER_CONFIG`, sized to ``tokenizer``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    shape = json.loads(WRITER_CONFIG.read_text())
    model_type = shape.pop("model_type")
    shape.update(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                 eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **shape))


def prompt_text(tokenizer: "PreTrainedTokenizerFast", messages: list[dict[str, str]]) -> str:
    """The writer's input for chat ``messages``: its template with the generation prompt."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def supervised_fine_tune(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerFast", prompts: Sequence[str],
                         replies: Sequence[str], *, epochs: int = 2, batch_size: int = 32, lr: float = 2e-3,
                         seed: int = 0, progress: bool = True) -> list[float]:
    """Train ``model`` in place to write ``replies[k]`` after ``prompts[k]`` (templated, see :func:`prompt_text`).

    Cross-entropy on the reply's tokens and the closing ``</s>`` only; AdamW with a cosine schedule.
    Returns the mean loss of each epoch.
    """
    import torch

    if len(prompts) != len(replies) or not prompts:
        raise ValueError(f"{len(prompts)} prompts and {len(replies)} replies: give one reply per prompt, at least one")
    examples = []
    for prompt, reply in zip(prompts, replies):
        head = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        tail = tokenizer(reply, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        examples.append((head + tail, len(head)))
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    steps = epochs * math.ceil(len(examples) / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    losses = []
    model.train()
    with tqdm(total=steps, desc="fine-tuning the writer", unit="step", disable=not progress, file=sys.stderr,
              dynamic_ncols=True) as bar:
        for _ in range(epochs):
            total = count = 0.0
            order = rng.permutation(len(examples))
            for start in range(0, len(examples), batch_size):
                batch = [examples[i] for i in order[start:start + batch_size]]
                width = max(len(ids) for ids, _ in batch)
                ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
                labels = torch.full((len(batch), width), -100, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for k, (seq, n_prompt) in enumerate(batch):
                    ids[k, :len(seq)] = torch.tensor(seq)
                    labels[k, n_prompt:len(seq)] = torch.tensor(seq[n_prompt:])
                    mask[k, :len(seq)] = 1
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                total, count = total + float(loss.detach()) * len(batch), count + len(batch)
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            losses.append(total / count)
    model.eval()
    return losses


def sample_replies(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerFast", prompts: Sequence[str], n: int,
                   temperature: float, seed: int = 0, max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = 32,
                   progress: bool = False, desc: str = "writing") -> list[list[str]]:
    """``n`` replies per templated prompt: sampled at ``temperature`` (seeded, the global torch generator left as
    it was), or the greedy reply ``n`` times at temperature 0. Batched, left-padded; special tokens removed."""
    import torch
    from transformers import GenerationConfig

    sampled = temperature > 0
    config = GenerationConfig(max_new_tokens=int(max_new_tokens), do_sample=sampled, num_beams=1,
                              num_return_sequences=int(n) if sampled else 1, pad_token_id=tokenizer.pad_token_id,
                              eos_token_id=tokenizer.eos_token_id,
                              **({"temperature": float(temperature), "top_k": 0, "top_p": 1.0} if sampled else {}))
    out: list[list[str]] = []
    per_batch = max(1, batch_size // (n if sampled else 1))
    with torch.inference_mode(), torch.random.fork_rng(enabled=sampled), \
            tqdm(total=len(prompts), desc=desc, unit="session", disable=not progress, file=sys.stderr,
                 dynamic_ncols=True) as bar:
        torch.manual_seed(seed)
        for start in range(0, len(prompts), per_batch):
            encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts[start:start + per_batch]]
            width = max(len(e) for e in encoded)
            ids = torch.full((len(encoded), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(encoded), width), dtype=torch.long)
            for k, e in enumerate(encoded):
                ids[k, width - len(e):] = torch.tensor(e)
                mask[k, width - len(e):] = 1
            generated = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
            texts = tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
            step = n if sampled else 1
            out += [texts[k:k + step] * (1 if sampled else n) for k in range(0, len(texts), step)]
            bar.update(len(encoded))
    return out


def save_writer(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerFast", folder: str | os.PathLike,
                info: dict[str, Any] | None = None) -> Path:
    """Write the writer as a folder ``hf:<folder>`` loads (safetensors, tokenizer, ``writer.json`` with ``info``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    # Written last: a folder with writer.json holds a complete save.
    (folder / "writer.json").write_text(json.dumps(info or {}, indent=2) + "\n")
    return folder


def load_writer(folder: str | os.PathLike) -> tuple["PreTrainedModel", "PreTrainedTokenizerFast"]:
    """The model (eval mode, CPU, float32) and tokenizer of a writer folder; no remote code, safetensors only."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(folder), trust_remote_code=False, local_files_only=True,
                                                 use_safetensors=True)
    return model.eval(), tokenizer


def parameter_count(model: "torch.nn.Module") -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
