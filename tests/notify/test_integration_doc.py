"""The signature-checking examples of docs/integration.md (Python, Java, shell with
openssl) accept a delivery signed as notify signs it, and refuse a changed body, a wrong
secret and an old timestamp."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from services.notify import domain
from tests.support import ROOT

DOC = (ROOT / "docs" / "integration.md").read_text()
SECRET = "3f1c0de4a9b24f6f8e7d6c5b4a392817"
BODY = b'{"specversion":"1.0","type":"backstop.risk.alert.raised.v1","data":{"level":"at_risk","region_code":"441881101201"}}'


def block(language: str, marker: str) -> str:
    for code in re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.S):
        if marker in code:
            return str(code)
    raise AssertionError(f"no {language} example with {marker!r} in docs/integration.md")


def cases() -> list[tuple[bytes, str, str, str, bool]]:
    """(body, secret, timestamp, signature, valid)"""
    now = int(time.time())
    good = domain.signature_headers(SECRET, BODY, now)
    old = domain.signature_headers(SECRET, BODY, now - 600)
    ts, sig = good["X-Backstop-Timestamp"], good["X-Backstop-Signature-V2"]
    return [
        (BODY, SECRET, ts, sig, True),
        (BODY.replace(b"at_risk", b"watch"), SECRET, ts, sig, False),
        (BODY, "another-secret", ts, sig, False),
        (BODY, SECRET, old["X-Backstop-Timestamp"], old["X-Backstop-Signature-V2"], False),
    ]


def check(run: Callable[[bytes, str, str, str], bool]) -> None:
    for body, secret, ts, sig, valid in cases():
        assert run(body, secret, ts, sig) is valid, (body[:40], secret, valid)


def test_python_example() -> None:
    scope: dict[str, object] = {}
    exec(block("python", "def verify"), scope)
    verify: Callable[[str, bytes, str, str], bool] = scope["verify"]  # type: ignore[assignment]
    check(lambda body, secret, ts, sig: verify(secret, body, ts, sig))


def test_shell_openssl_example(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl on this machine")
    script = block("sh", "openssl dgst")

    def run(body: bytes, secret: str, ts: str, sig: str) -> bool:
        (tmp_path / "body.json").write_bytes(body)
        env = {**os.environ, "TS": ts, "SIG": sig, "SECRET": secret}
        result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env,
                                capture_output=True, text=True)  # fmt: skip
        return result.returncode == 0 and result.stdout.strip() == "valid"

    check(run)


def test_java_example(tmp_path: Path) -> None:
    java = shutil.which("java")
    if java is None:
        pytest.skip("no Java on this machine")
    source = tmp_path / "BackstopSignature.java"
    source.write_text(block("java", "class BackstopSignature"))

    def run(body: bytes, secret: str, ts: str, sig: str) -> bool:
        (tmp_path / "body.json").write_bytes(body)
        result = subprocess.run([java, str(source), secret, "body.json", ts, sig], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        return result.returncode == 0 and result.stdout.strip() == "valid"

    check(run)
