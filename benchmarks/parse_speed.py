"""How long parse_ranking takes on long replies of the worst shapes, 1 kB to 100 kB.

Writes benchmarks/parse_speed.txt and benchmarks/parse_speed.json. Target: a 100 kB reply of any
shape in under 50 ms (parsing is linear in the reply's length; replies are cut to MAX_REPLY_CHARS).
Run: python benchmarks/parse_speed.py
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from rec_gym.llm.parsing import MAX_REPLY_CHARS, parse_ranking

SIZES_KB = [1, 10, 16, 80, 100]
REPEATS = 5
TARGET_MS = 50.0
CANDIDATES = [f"Movie Number {i}, The ({1950 + i})" for i in range(50)]
HERE = Path(__file__).resolve().parent


def one_long_line(n: int) -> str:
    return "1. " + "Movie Number, a - b (c, " * (n // 24)


def many_lines(n: int) -> str:
    lines = (f"{i % 99 + 1}. {CANDIDATES[i % 50]} - because it is a fine film" for i in range(n))
    return "\n".join(lines)[:n]


def long_comma_list(n: int) -> str:
    return ", ".join(CANDIDATES[i % 50].replace(", The", "") + ", unknown" for i in range(n))[:n]


def unclosed_think_block(n: int) -> str:
    return "<think>" + "1. Movie Number 3 (1953)\n" * (n // 25)


SHAPES = {"one long line": one_long_line, "many lines": many_lines,
          "long comma list": long_comma_list, "unclosed think block": unclosed_think_block}


def best_ms(reply: str) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        parse_ranking(reply, CANDIDATES)
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


rows = []
for shape, make in SHAPES.items():
    for kb in SIZES_KB:
        reply = make(kb * 1000)
        rows.append({"shape": shape, "kb": kb, "chars": len(reply), "ms": round(best_ms(reply), 2)})

worst_100 = max(row["ms"] for row in rows if row["kb"] == 100)
result = {"python": platform.python_version(), "max_reply_chars": MAX_REPLY_CHARS, "candidates": len(CANDIDATES),
          "repeats": REPEATS, "target_ms_100kb": TARGET_MS, "worst_ms_100kb": worst_100, "rows": rows}
(HERE / "parse_speed.json").write_text(json.dumps(result, indent=2) + "\n")
lines = [f"parse_ranking, best of {REPEATS}, {len(CANDIDATES)} candidates, replies cut to {MAX_REPLY_CHARS} chars",
         f"{'shape':<22}" + "".join(f"{kb:>9} kB" for kb in SIZES_KB)]
for shape in SHAPES:
    lines.append(f"{shape:<22}" + "".join(f"{row['ms']:>9.1f}ms" for row in rows if row["shape"] == shape))
lines.append(f"worst 100 kB: {worst_100:.1f} ms (target < {TARGET_MS:.0f} ms): {'met' if worst_100 < TARGET_MS else 'NOT met'}")
(HERE / "parse_speed.txt").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
