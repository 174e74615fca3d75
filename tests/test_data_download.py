"""Finding raw files and downloading archives, from a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rec_gym.data import download
from rec_gym.data.download import Archive, ChecksumMismatchError, DatasetNotFoundError, fetch
from rec_gym.storage import cache_dir


def zip_bytes(top: str, files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, text in files.items():
            zf.writestr(f"{top}/{name}", text)
    return buffer.getvalue()


ML1M_ZIP = zip_bytes("ml-1m", {"ratings.dat": "1::1::5::978300760\n", "movies.dat": "1::Toy Story (1995)::Comedy\n",
                               "README": "test archive"})


class LocalWeb:
    """An HTTP server on 127.0.0.1 serving fixed bytes per path (404 otherwise), recording every request."""

    def __init__(self) -> None:
        self.pages: dict[str, bytes] = {}
        self.requested: list[str] = []
        web = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = web.root + self.path
                web.requested.append(url)
                body = web.pages.get(url)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.root = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.base = f"{self.root}/movielens"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def web(monkeypatch):
    """The local server, with every downloadable archive's URL pointing at it (ml-1m's MD5 pinned to ML1M_ZIP's)."""
    server = LocalWeb()
    monkeypatch.setitem(download.ARCHIVES, "ml-1m", Archive(f"{server.base}/ml-1m.zip", hashlib.md5(ML1M_ZIP).hexdigest()))
    monkeypatch.setitem(download.ARCHIVES, "ml-latest-small", Archive(f"{server.base}/ml-latest-small.zip", None))
    yield server
    server.close()


def test_a_verified_archive_is_unzipped_into_the_cache(web):
    url = download.ARCHIVES["ml-1m"].url
    web.pages[url] = ML1M_ZIP
    folder = fetch("ml-1m")
    assert folder == cache_dir("datasets") / "ml-1m"
    assert (folder / "movies.dat").read_text() == "1::Toy Story (1995)::Comedy\n"
    assert json.loads((folder / "SOURCE.json").read_text())["sha256"] == hashlib.sha256(ML1M_ZIP).hexdigest()
    # Only the dataset folder is left: no archive, no temporary files or folders.
    assert [p.name for p in cache_dir("datasets").iterdir()] == ["ml-1m"]
    assert web.requested == [url]
    assert fetch("ml-1m") == folder and web.requested == [url]  # the second call stays offline


def test_without_a_pinned_md5_the_published_md5_file_is_read_first(web):
    url = download.ARCHIVES["ml-latest-small"].url
    archive = zip_bytes("ml-latest-small", {"ratings.csv": "userId,movieId,rating,timestamp\n",
                                            "movies.csv": "movieId,title,genres\n"})
    web.pages[url] = archive
    web.pages[url + ".md5"] = f"MD5 (ml-latest-small.zip) = {hashlib.md5(archive).hexdigest()}\n".encode()
    folder = fetch("ml-latest-small")
    assert web.requested == [url + ".md5", url]
    assert (folder / "ratings.csv").is_file()


def test_a_checksum_mismatch_keeps_nothing(web, monkeypatch):
    url = download.ARCHIVES["ml-1m"].url
    web.pages[url] = ML1M_ZIP
    monkeypatch.setitem(download.ARCHIVES, "ml-1m", Archive(url, "0" * 32))
    with pytest.raises(ChecksumMismatchError, match=r"ml-1m.zip: MD5 [0-9a-f]{32} differs from the published 0{32}") as info:
        fetch("ml-1m")
    assert hashlib.md5(ML1M_ZIP).hexdigest() in str(info.value)
    assert list(cache_dir("datasets").iterdir()) == []


def test_a_missing_file_on_the_server_names_the_url_and_where_to_put_the_files(web):
    with pytest.raises(DatasetNotFoundError) as info:
        fetch("ml-1m")
    message = str(info.value)
    assert "404" in message and download.ARCHIVES["ml-1m"].url in message
    assert "ratings.dat, movies.dat" in message and "data_dir=" in message
    assert str(cache_dir("datasets") / "ml-1m") in message
    assert list(cache_dir("datasets").iterdir()) == []


def test_no_server_and_no_copy_says_which_files_go_where(monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ml-1m.zip"
    monkeypatch.setitem(download.ARCHIVES, "ml-1m", Archive(url, "0" * 32))
    with pytest.raises(DatasetNotFoundError) as info:
        fetch("ml-1m")
    message = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert "Download failed" in message and f"127.0.0.1:{port}" in message
    assert "ratings.dat, movies.dat" in message and str(cache_dir("datasets") / "ml-1m") in message
    assert list(cache_dir("datasets").iterdir()) == []


def test_steam_is_never_downloaded_and_the_error_lists_its_files(web):
    with pytest.raises(DatasetNotFoundError, match=r"id2name.txt, train.jsonl or train_sample.jsonl, val.jsonl"):
        fetch("steam")
    assert web.requested == []


def make_ml1m_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "ratings.dat").write_text("")
    (folder / "movies.dat").write_text("")
    return folder


def test_data_dir_may_be_the_folder_or_its_parent(tmp_path, web):
    folder = make_ml1m_folder(tmp_path / "data" / "ml-1m")
    assert fetch("ml-1m", folder) == folder
    assert fetch("ml-1m", tmp_path / "data") == folder
    assert web.requested == []


def test_a_data_dir_without_the_files_is_an_error_and_no_download(tmp_path, web):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"(?s)not found in .*empty.*data_dir="):
        fetch("ml-1m", tmp_path / "empty")
    assert web.requested == []


def test_rec_gym_data_points_at_a_folder_of_dataset_folders(tmp_path, web, monkeypatch):
    folder = make_ml1m_folder(tmp_path / "datasets" / "ml-1m")
    monkeypatch.setenv("REC_GYM_DATA", str(tmp_path / "datasets"))
    assert fetch("ml-1m") == folder and web.requested == []


def test_an_archive_member_escaping_the_folder_is_refused(tmp_path):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("../outside.txt", "x")
    (tmp_path / "out").mkdir()
    with pytest.raises(ValueError, match="would be written outside"):
        download._safe_extract(path, tmp_path / "out")
    assert not (tmp_path / "outside.txt").exists()
