"""How long parse_ranking takes on long replies of the worst shapes, 1 kB to 100 kB.

Writes benchmarks/parse_speed.txt and benchmarks/parse_speed.json. Target: a 100 kB reply of any
shape in under 50 ms of CPU time (parsing is linear in the reply's length; replies are cut to MAX_REPLY_CHARS).
Run: python benchmarks/parse_speed.py
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from rec_gym.llm.parsing import MAX_REPLY_CHARS, parse_ranking

SIZES_KB = [1, 10, 16, 80, 100]
REPEATS = 5
TARGET_MS = 50.0
CANDIDATES = [f"Movie Number {i}, The ({1950 + i})" for i in range(50)]
HERE = Path(__file__).resolve().parent


# Every shape mixes real candidate titles with distinct text that names none, so no cache helps.
def one_long_line(n: int) -> str:
    return "1. " + " ".join(f"Movie Number {i % 50}, a - b (c {i}," for i in range(n // 20))[:n]


def many_lines(n: int) -> str:
    lines = (f"{i % 99 + 1}. {CANDIDATES[i % 50] if i % 2 else f'Another film {i}'} - because it is fine"
             for i in range(n // 20))
    return "\n".join(lines)[:n]


def long_comma_list(n: int) -> str:
    return ", ".join(CANDIDATES[i % 50].replace(", The", "") if i % 2 else f"Unknown film {i}" for i in range(n // 10))[:n]


def near_titles(n: int) -> str:
    # Lines that open like a candidate title, so each one is normalised and looked up in full.
    return "\n".join(f"{i % 99 + 1}. Movie Number {i} extra {i} - a note" for i in range(n // 20))[:n]


def unclosed_think_block(n: int) -> str:
    return "<think>" + "1. Movie Number 3 (1953)\n" * (n // 25)


SHAPES = {"one long line": one_long_line, "many lines": many_lines, "long comma list": long_comma_list,
          "near-title lines": near_titles, "unclosed think block": unclosed_think_block}


def best_ms(reply: str) -> float:
    # CPU time of this process: the machine this runs on is often shared, and waiting for a core
    # is not parsing.
    times = []
    for _ in range(REPEATS):
        start = time.process_time()
        parse_ranking(reply, CANDIDATES)
        times.append(time.process_time() - start)
    return 1000 * min(times)


rows = []
for shape, make in SHAPES.items():
    for kb in SIZES_KB:
        reply = make(kb * 1000)
        rows.append({"shape": shape, "kb": kb, "chars": len(reply), "ms": round(best_ms(reply), 2)})

worst_100 = max(row["ms"] for row in rows if row["kb"] == 100)
result = {"python": platform.python_version(), "load_average_1min": round(os.getloadavg()[0], 2),
          "cpus": os.cpu_count(), "max_reply_chars": MAX_REPLY_CHARS, "candidates": len(CANDIDATES),
          "repeats": REPEATS, "target_ms_100kb": TARGET_MS, "worst_ms_100kb": worst_100, "rows": rows}
(HERE / "parse_speed.json").write_text(json.dumps(result, indent=2) + "\n")
lines = [f"parse_ranking, CPU time, best of {REPEATS}, {len(CANDIDATES)} candidates, replies cut to {MAX_REPLY_CHARS} chars "
         f"(load average {result['load_average_1min']} on {result['cpus']} CPUs)",
         f"{'shape':<22}" + "".join(f"{kb:>9} kB" for kb in SIZES_KB)]
for shape in SHAPES:
    lines.append(f"{shape:<22}" + "".join(f"{row['ms']:>9.1f}ms" for row in rows if row["shape"] == shape))
lines.append(f"worst 100 kB: {worst_100:.1f} ms (target < {TARGET_MS:.0f} ms): {'met' if worst_100 < TARGET_MS else 'NOT met'}")
(HERE / "parse_speed.txt").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
