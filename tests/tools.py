"""Command-line tools some tests need (promtool, helm, kubeconform), installed from the Go
module proxy with `go install` into ~/.cache/backstop/gobin on first use and reused after.
A tool that cannot be had (no Go toolchain, no proxy) skips its tests with the reason."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

GOBIN = Path(os.environ.get("BACKSTOP_CACHE", Path.home() / ".cache" / "backstop")) / "gobin"
# name -> module@version (versions pinned: the cache is keyed by them).
TOOLS = {
    "promtool": "github.com/prometheus/prometheus/cmd/promtool@v0.316.0",
    "helm": "helm.sh/helm/v3/cmd/helm@v3.21.4",
    "kubeconform": "github.com/yannh/kubeconform/cmd/kubeconform@v0.8.0",
}


def go_binary() -> str:
    """The Go toolchain, or a skip of the test that needs it."""
    go = shutil.which("go") or next(
        (g for g in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go") if Path(g).exists()), None
    )
    if go is None:
        pytest.skip("no Go toolchain: the tool comes from the Go module proxy")
    return go


def go_tool(name: str) -> Path:
    """The tool's binary, built on first use (a few minutes for promtool and helm)."""
    module = TOOLS[name]
    version = module.rsplit("@", 1)[1]
    binary = GOBIN / version / name
    if binary.exists():
        return binary
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        pytest.skip(f"{name}: no Go toolchain to `go install {module}`")
    binary.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(
            [go, "install", module],
            env={**os.environ, "GOBIN": str(binary.parent), "GOFLAGS": "-buildvcs=false"},
            capture_output=True,
            text=True,
            timeout=3600,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"{name}: `go install {module}` took over an hour on this machine")
    if result.returncode != 0 or not binary.exists():
        pytest.skip(f"{name}: `go install {module}` failed: {result.stderr[-500:]}")
    return binary
