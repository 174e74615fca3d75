"""Reading the text files of a dataset: UTF-8 lines and JSON lines, with errors that name the line.

Every loader reads its text through here, so a file in the wrong encoding (UTF-16, latin-1) or a
JSON line nested too deeply for the parser is reported as ``<file> line <n>: ...`` with the way
out, instead of a bare ``UnicodeDecodeError`` or ``RecursionError`` from deep inside.
"""

from __future__ import annotations

import codecs
import json
import os
from typing import Any, Iterator

__all__ = ["decode_line", "parse_json", "read_text", "text_lines"]

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def decode_line(raw: bytes, path: str | os.PathLike, lineno: int) -> str:
    """``raw`` (one line of ``path``) decoded as UTF-8; a clear ``ValueError`` when it is not UTF-8."""
    if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        text = raw.decode("utf-8")
        if "\x00" not in text:  # UTF-16 of plain ASCII is valid UTF-8, with a NUL after every letter
            return text
        guess = "it has NUL bytes; it looks like UTF-16"
    except UnicodeDecodeError as exc:
        if (lineno == 1 and raw.startswith(_UTF16_BOMS)) or b"\x00" in raw:
            guess = "it looks like UTF-16"
        else:
            guess = f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1} is not UTF-8 (latin-1 or another 8-bit encoding?)"
    raise ValueError(f"{path} line {lineno}: not UTF-8 text ({guess}); the expected encoding is UTF-8, "
                     f"so save the file as UTF-8 (e.g. iconv -t UTF-8)")


def text_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """``(line number, line without its line end)`` for every line of the UTF-8 file ``path``."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            yield lineno, decode_line(raw, path, lineno).rstrip("\r\n")


def read_text(path: str | os.PathLike) -> str:
    """The whole UTF-8 file ``path``, with the same errors as :func:`text_lines`."""
    return "\n".join(line for _, line in text_lines(path))


def parse_json(text: str, path: str | os.PathLike, lineno: int) -> Any:
    """``json.loads(text)`` of line ``lineno`` of ``path``, with errors naming the file and line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} line {lineno + exc.lineno - 1}: not valid JSON ({exc.msg} at column "
                         f"{exc.colno})") from None
    except RecursionError:
        raise ValueError(f"{path} line {lineno}: JSON nested too deeply to read; a dataset line holds "
                         f"flat lists of item ids and plain values") from None
