"""Issue 16: a plain install works on CPython 3.13 (blspy has no 3.13 wheels; pyblst carries
the BLS certificates there). Runs where a 3.13 interpreter is found (``$POE_PYTHON313``,
``python3.13`` on PATH, or a pyenv 3.13); skipped with the places it looked otherwise.

In a fresh virtualenv of that interpreter: ``pip install <checkout>`` (no extras, as a user
would; the kernels compile), then the installed ``poe`` runs a threshold-signature (TS)
cluster under load, where every request must be proven, and names pyblst as its backend.
About two minutes, most of it compiling the kernels.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.skipif(not (ROOT / "pyproject.toml").is_file(),
                                 reason="needs the source checkout"),
              pytest.mark.slow]

PLACES = ("$POE_PYTHON313", "python3.13 on PATH", "~/.pyenv/versions/3.13*/bin/python3.13",
          "/root/.pyenv/versions/3.13*/bin/python3.13")


def _runs_313(python: str) -> bool:
    try:
        done = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return False
    return done.returncode == 0 and done.stdout.strip() == "(3, 13)"


def _python313() -> str | None:
    """The first candidate that really runs CPython 3.13 (a pyenv shim on PATH may name a
    version it will not run)."""
    candidates = [os.environ.get("POE_PYTHON313"), shutil.which("python3.13")]
    for pattern in (os.path.expanduser("~/.pyenv/versions/3.13*/bin/python3.13"),
                    "/root/.pyenv/versions/3.13*/bin/python3.13"):
        candidates += sorted(glob.glob(pattern), reverse=True)
    for python in candidates:
        if python and _runs_313(python):
            return python
    return None


def test_a_plain_install_on_python_3_13_runs_a_ts_cluster(tmp_path: Path) -> None:
    python = _python313()
    if python is None:
        pytest.skip("no CPython 3.13 interpreter found (looked at " + ", ".join(PLACES) + ")")
    env = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(env)], check=True, timeout=120)
    py = str(env / "bin" / "python")
    done = subprocess.run([py, "-m", "pip", "install", "--quiet", str(ROOT)],
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    listed = subprocess.run([py, "-m", "pip", "list", "--format", "json"], capture_output=True,
                            text=True, timeout=120, check=True)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "poe-bft" in names and "pyblst" in names and "blspy" not in names, sorted(names)
    # as a user's shell has it: the suite's pin of the BLS backend (tests/conftest.py) is ours
    environ = {k: v for k, v in os.environ.items() if k != "POE_BLS_BACKEND"}
    run = subprocess.run([py, "-P", "-m", "poe", "cluster", "--mode", "ts", "--warmup", "1",
                          "--duration", "2", "--clients", "2", "--outstanding", "1",
                          "--keep", "--json", str(tmp_path / "run.json")],
                         capture_output=True, text=True, timeout=300, check=False,
                         cwd=tmp_path, env=environ)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    results = json.loads((tmp_path / "run.json").read_text())["results"]
    assert results["measured_requests"] > 0
    assert results["proven_requests"] == results["measured_requests"]
    kept = next(line.split("kept ", 1)[1].strip() for line in run.stderr.splitlines()
                if "kept " in line)
    log = (Path(kept) / "replica-0.log").read_text()
    shutil.rmtree(kept, ignore_errors=True)
    assert '"bls_backend":"pyblst"' in log.replace(" ", ""), log[:2000]
