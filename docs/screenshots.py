"""Build the site and screenshot it in headless Chromium: the index, an env page and a search.

    python docs/screenshots.py                 # writes docs/_screenshots/{index,env_page,search}.png
    python docs/screenshots.py --no-build      # screenshot docs/_build/html as it is

Needs the docs extra (``pip install -e ".[docs]"``) and Chromium (Debian: ``apt-get install chromium``).
The pages are served from 127.0.0.1 on a free port, because furo's search page loads its index with
JavaScript; ``--virtual-time-budget`` lets that script finish before the screenshot is taken.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import subprocess
import sys
import threading
from pathlib import Path

DOCS = Path(__file__).resolve().parent
HTML = DOCS / "_build" / "html"
OUT = DOCS / "_screenshots"

# (file name, page path with its query, window height in pixels)
SHOTS = (
    ("index.png", "index.html", 1400),
    ("env_page.png", "envs/Re2LLM-Synthetic-v0.html", 1400),
    ("search.png", "search.html?q=feedback+table", 1200),
)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the built site without a line on stderr per request."""

    def log_message(self, format: str, *args: object) -> None:
        pass


def build() -> None:
    subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(HTML)],
                   check=True)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("screenshots: no Chromium found; on Debian: apt-get install -y chromium")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-build", action="store_true", help="use docs/_build/html as it is")
    parser.add_argument("--width", type=int, default=1280, help="window width in pixels")
    args = parser.parse_args()
    if not args.no_build:
        build()
    if not (HTML / "index.html").is_file():
        raise SystemExit(f"screenshots: {HTML / 'index.html'} does not exist; run without --no-build")
    OUT.mkdir(exist_ok=True)
    browser = chromium()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(HTML)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for name, page, height in SHOTS:
            url = f"http://127.0.0.1:{server.server_address[1]}/{page}"
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            "--virtual-time-budget=15000", f"--window-size={args.width},{height}",
                            f"--screenshot={OUT / name}", url],
                           check=True, capture_output=True, timeout=120)
            print(OUT / name)
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
