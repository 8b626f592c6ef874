"""The report as PDF: the HTML page printed by headless Chromium (--print-to-pdf)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from fleetsim.errors import SpecError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PDF_TIMEOUT_S = 180


def find_browser() -> str | None:
    env = os.environ.get("FLEETSIM_CHROMIUM")
    if env and shutil.which(env):
        return shutil.which(env)
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    return None


def print_pdf(html: str | Path, pdf: str | Path) -> Path:
    """Print `html` to `pdf` with headless Chromium; SpecError (one line) when none is installed."""
    browser = find_browser()
    if browser is None:
        raise SpecError(
            "report --pdf: no Chromium found (looked for " + ", ".join(BROWSERS) + " on PATH, and FLEETSIM_CHROMIUM); "
            "install one (e.g. apt-get install chromium) or print the HTML from a browser"
        )
    src, out = Path(html).resolve(), Path(pdf).resolve()
    with tempfile.TemporaryDirectory() as home:
        r = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-pdf-header-footer",
                f"--print-to-pdf={out}",
                src.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=PDF_TIMEOUT_S,
            env={**os.environ, "HOME": home},
        )
    if not out.is_file() or out.stat().st_size == 0:
        raise SpecError(f"report --pdf: {browser} did not write {out} (exit {r.returncode}): {r.stderr.strip()[-200:]}")
    return out
