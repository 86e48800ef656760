"""Fixtures shared by every test folder."""

import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def corpus_dir() -> Path:
    """The shared corpus of real PDFs (EMETERAI_CORPUS_DIR, or ../shared/corpus/pdf beside the repo)."""
    return Path(os.environ.get("EMETERAI_CORPUS_DIR", ROOT.parent / "shared" / "corpus" / "pdf"))


def require_corpus() -> Path:
    path = corpus_dir()
    if not (path / "MANIFEST.tsv").exists():
        message = f"the PDF corpus is missing at {path}; set EMETERAI_CORPUS_DIR"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
