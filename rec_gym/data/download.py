"""Finding a dataset's raw files, and downloading the MovieLens ones from GroupLens when they are missing.

:func:`fetch` looks, in order, in

1. ``data_dir`` when given (the folder itself, or its subfolder named like the dataset,
   e.g. ``data_dir/ml-1m/``); nothing is downloaded then;
2. ``$REC_GYM_DATA/<name>/`` when that variable is set (a folder holding dataset folders);
3. ``<cache>/datasets/<name>/`` (``$REC_GYM_CACHE`` or ``~/.cache/rec_gym``);

and otherwise downloads the MovieLens archive into 3. Steam has no download: its LLaRA
release is not served from a stable URL, so its files must be put in place by hand.

Checksums: ml-1m.zip and ml-25m.zip are frozen releases whose MD5 GroupLens publishes in
``<archive>.md5`` beside them; those MD5s are pinned below. ml-latest-small.zip is rebuilt by
GroupLens from time to time, so its MD5 is read from the published ``.md5`` file first. pooch
downloads the archive to a temporary file and keeps it only if its MD5 matches; its SHA-256 is then
recorded in ``SOURCE.json`` in the dataset folder.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rec_gym.storage import cache_dir

DATA_ENV_VAR = "REC_GYM_DATA"
GROUPLENS = "https://files.grouplens.org/datasets/movielens"
LLARA = "https://github.com/ljy0ustc/LLaRA"


@dataclass(frozen=True)
class Archive:
    """A downloadable archive: its URL and, for frozen releases, the MD5 GroupLens publishes for it."""

    url: str
    md5: str | None

    @property
    def md5_url(self) -> str:
        return self.url + ".md5"


ARCHIVES: dict[str, Archive] = {
    "ml-1m": Archive(f"{GROUPLENS}/ml-1m.zip", "c4d9eecfca2ab87c1945afe126590906"),
    "ml-25m": Archive(f"{GROUPLENS}/ml-25m.zip", "6b51fb2759a8657d3bfcbfc42b592ada"),
    "ml-latest-small": Archive(f"{GROUPLENS}/ml-latest-small.zip", None),
}

# The files each dataset's loader reads; a folder holding them is the dataset's folder.
# A tuple inside the tuple means "one of these".
DATASET_FILES: dict[str, tuple[str | tuple[str, ...], ...]] = {
    "ml-1m": ("ratings.dat", "movies.dat"),
    "ml-latest-small": ("ratings.csv", "movies.csv"),
    "ml-25m": ("ratings.csv", "movies.csv"),
    "steam": ("id2name.txt", ("train.jsonl", "train_sample.jsonl"), "val.jsonl", "test.jsonl"),
}
# Other folder names a dataset's files are commonly kept under.
_ALIASES = {"steam": ("steam-sessions", "Steam")}


class DatasetNotFoundError(RuntimeError):
    """The dataset's files are neither on this machine nor downloadable now."""


class ChecksumMismatchError(RuntimeError):
    """A downloaded archive is not the one GroupLens published; nothing was kept."""


def has_files(name: str, folder: Path) -> bool:
    """Whether ``folder`` holds every file ``DATASET_FILES[name]`` lists."""
    return all(any((folder / option).is_file() for option in ((f,) if isinstance(f, str) else f))
               for f in DATASET_FILES[name])


def source_files(name: str, folder: Path) -> list[Path]:
    """The files of ``folder`` that dataset ``name``'s loader reads (those present)."""
    names = [f for entry in DATASET_FILES[name] for f in ((entry,) if isinstance(entry, str) else entry)]
    return [folder / f for f in names if (folder / f).is_file()]


def _describe_files(name: str) -> str:
    return ", ".join(f if isinstance(f, str) else " or ".join(f) for f in DATASET_FILES[name])


def _search_folders(name: str, root: Path) -> list[Path]:
    return [root / sub for sub in (name, *_ALIASES.get(name, ()))]


def not_found_message(name: str, data_dir: Path | None = None, reason: str | None = None) -> str:
    """What to put where: the text of :class:`DatasetNotFoundError`."""
    target = data_dir if data_dir is not None else cache_dir("datasets") / name
    lines = [f"dataset {name!r} was not found" + (f" in {data_dir}" if data_dir is not None else "") + "."]
    if reason:
        lines.append(f"Download failed: {reason}")
    lines.append(f"Put these files in {target}/ (or in a subfolder {name}/ of the folder you pass as data_dir=): "
                 f"{_describe_files(name)}.")
    if name in ARCHIVES:
        lines.append(f"They are the contents of {ARCHIVES[name].url}; unzip it and pass "
                     f"data_dir=<the folder that holds {name}/>, or set {DATA_ENV_VAR} to that folder.")
    elif name == "steam":
        lines.append(f"They are the Steam sessions of the LLaRA release ({LLARA}), one JSON object "
                     f'{{"history": [ids], "target": id}} per line, with id2name.txt as "<id>::<title>" lines; '
                     f"pass data_dir=<that folder>, or set {DATA_ENV_VAR} to the folder holding steam/.")
    return "\n".join(lines)


def fetch(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding dataset ``name``'s raw files, downloading them if needed and possible.

    Raises:
        DatasetNotFoundError: the files are not found and cannot be downloaded; the message
            lists the files and the folder to put them in.
        ChecksumMismatchError: a download did not match GroupLens's published MD5.
    """
    if name not in DATASET_FILES:
        raise ValueError(f"no raw files are known for dataset {name!r}; known: {sorted(DATASET_FILES)}")
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        for folder in (root, *_search_folders(name, root)):
            if has_files(name, folder):
                return folder
        raise DatasetNotFoundError(not_found_message(name, root))
    if os.environ.get(DATA_ENV_VAR):
        for folder in _search_folders(name, Path(os.environ[DATA_ENV_VAR]).expanduser()):
            if has_files(name, folder):
                return folder
    folder = cache_dir("datasets") / name
    if has_files(name, folder):
        return folder
    if name not in ARCHIVES:
        raise DatasetNotFoundError(not_found_message(name))
    try:
        return download(name)
    except (OSError, ValueError) as exc:  # requests' errors (pooch's) are OSErrors; ValueError: a bad .md5 file
        raise DatasetNotFoundError(not_found_message(name, reason=str(exc))) from exc


def _downloader(progress: bool = False) -> Any:
    """pooch's HTTP downloader: a minute's timeout, a progress bar on a terminal when ``progress``."""
    import pooch

    return pooch.HTTPDownloader(progressbar=progress and sys.stderr.isatty(), timeout=60)


def published_md5(archive: Archive) -> str:
    """The MD5 in GroupLens's ``<archive>.md5`` file (``MD5 (ml-1m.zip) = <hex>``)."""
    buffer = io.BytesIO()
    _downloader()(archive.md5_url, buffer, None)
    text = buffer.getvalue()[:4096].decode("ascii", errors="replace")
    match = re.search(r"\b[0-9a-fA-F]{32}\b", text)
    if not match:
        raise ValueError(f"{archive.md5_url} holds no MD5 checksum: {text[:100]!r}")
    return match.group(0).lower()


def _download_verified(url: str, dest: Path, md5: str) -> str:
    """Download ``url`` to ``dest`` if its MD5 is ``md5``; returns its SHA-256. Nothing is left on failure."""
    import pooch

    try:
        pooch.retrieve(url, known_hash=f"md5:{md5}", fname=dest.name, path=dest.parent, downloader=_downloader(True))
    except ValueError as exc:  # pooch's hash mismatch; it has deleted the download
        got = re.search(r"but got ([0-9a-fA-F]+)", str(exc))
        raise ChecksumMismatchError(
            f"{url}: MD5 {got.group(1) if got else '(unknown)'} differs from the published {md5}; the download is "
            f"corrupt or the file changed, and was deleted. Try again, or download and unzip it yourself and pass "
            f"data_dir=.") from None
    return pooch.file_hash(str(dest), alg="sha256")


def _safe_extract(archive_path: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive_path) as zf:
        for member in zf.namelist():
            # Refuse absolute paths and "..": an archive must not write outside `dest`.
            target = (dest / member).resolve()
            if not target.is_relative_to(dest.resolve()):
                raise ValueError(f"{archive_path.name}: member {member!r} would be written outside {dest}")
        zf.extractall(dest)


def download(name: str) -> Path:
    """Download, verify and unzip ``ARCHIVES[name]`` into ``<cache>/datasets/<name>/``; returns that folder."""
    archive = ARCHIVES[name]
    root = cache_dir("datasets")
    final = root / name
    md5 = archive.md5 or published_md5(archive)
    zip_path = root / f"{name}.zip"
    sha256 = _download_verified(archive.url, zip_path, md5)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        _safe_extract(zip_path, staging)
        found = [d for d in (staging, *sorted(p for p in staging.iterdir() if p.is_dir())) if has_files(name, d)]
        if not found:
            raise ValueError(f"{archive.url} does not contain {_describe_files(name)}")
        source: dict[str, Any] = {"url": archive.url, "md5": md5, "sha256": sha256}
        (found[0] / "SOURCE.json").write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
        if final.exists() and not has_files(name, final):
            shutil.rmtree(final)
        if not final.exists():
            # A rename within one folder is atomic: readers see no folder or a complete one.
            os.replace(found[0], final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        zip_path.unlink(missing_ok=True)
    return final
