"""The Dockerfile lints clean, and its build context holds only what it copies."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import ROOT

from .conftest import K8S, documents, render, require_tool

DOCKERFILE = ROOT / "Dockerfile"


def test_hadolint_is_clean() -> None:
    hadolint = require_tool("hadolint")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_bases_are_pinned_and_the_user_is_numeric_and_not_root() -> None:
    steps = instructions()
    bases = [args.split()[0] for op, args in steps if op == "FROM"]
    assert bases == ["python:3.11-slim-bookworm"] * 2
    (user,) = [args for op, args in steps if op == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit()


def test_the_image_exposes_the_ports_the_manifests_use() -> None:
    (exposed,) = [args for op, args in instructions() if op == "EXPOSE"]
    objects = documents(render(K8S / "overlays" / "prod"))
    ports = {
        p["containerPort"]
        for o in objects
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
        for p in c["ports"]
    }
    assert ports == {int(p) for p in exposed.split()}


def test_the_build_context_is_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # Everything is left out, then what the build needs is let back in.
    assert patterns[0] == "*"
    let_in = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = set()
    for op, args in instructions():
        if op == "COPY" and not args.startswith("--from"):
            copied |= {source.rstrip("/") for source in args.split()[:-1]}
    assert let_in == copied
    for source in copied:
        assert (ROOT / source).exists(), source
    for private in (".venv", ".git", ".emeterai", "tests", ".pytest_cache", ".ruff_cache", "bench"):
        assert private not in let_in
    assert "**/__pycache__" in patterns
