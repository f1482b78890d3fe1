"""Packaging (issue #16): the source distribution (poe_bft-<version>.tar.gz: the distribution
is poe-bft) carries what a build from it needs (the .pyx/.pxd/.h sources of poe/_core and
the LICENSE), installs into a fresh virtualenv with both commands (`poe`, `poe-bft`), and
release builds of the kernels carry no debug information.

The manual check these tests automate (from a checkout):

    python -m build --sdist --outdir dist . && python3.11 -m venv /tmp/v \
        && /tmp/v/bin/pip install dist/poe_bft-*.tar.gz && /tmp/v/bin/poe-bft --version

The sdist is built with build isolation (setuptools and Cython come from the package index,
as for any user); the two tests take 45 s on two idle cores (90 s on busy ones), most of
it compiling the four kernels.
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

import pytest

import poe
import poe._core

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "poe" / "_core"
pytestmark = [pytest.mark.skipif(not (ROOT / "pyproject.toml").is_file() or not CORE.is_dir(),
                                 reason="needs the source checkout"),
              pytest.mark.slow]


def _elf_sections(path: Path) -> set[str]:
    """Section names of a 64-bit little-endian ELF file (enough for x86-64 and aarch64)."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, path
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    strtab_off, = struct.unpack_from("<Q", data, shoff + shstrndx * shentsize + 0x18)
    names = set()
    for i in range(shnum):
        name_off, = struct.unpack_from("<I", data, shoff + i * shentsize)
        start = strtab_off + name_off
        names.add(data[start:data.index(b"\0", start)].decode())
    return names


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    pytest.importorskip("build", reason="the test extra installs `build`")
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(out),
                           str(ROOT)], capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    archives = sorted(p.name for p in out.iterdir())
    assert archives == [f"poe_bft-{poe.__version__}.tar.gz"], archives
    return out / archives[0]


def test_sdist_carries_the_kernel_sources_and_the_license(sdist):
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    wanted = {str(p.relative_to(ROOT)) for ext in ("*.pyx", "*.pxd", "*.h")
              for p in CORE.glob(ext)}
    assert {f"poe/_core/{k}.pyx" for k in poe._core.KERNELS} <= wanted
    assert wanted <= names, sorted(wanted - names)
    assert {"LICENSE", "setup.py", "pyproject.toml", "README.md"} <= names
    # generated or compiled files never ship: setup.py regenerates them from the .pyx
    assert not [n for n in names if n.endswith((".c", ".so", ".html"))]


def test_sdist_installs_into_a_fresh_virtualenv_with_stripped_kernels(sdist, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    environ = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "POE_DEBUG", "POE_DEBUG_BUILD", "POE_ONLY")}
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                           str(sdist)], capture_output=True, text=True, timeout=900,
                          check=False, env=environ, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # codec and window import nothing outside the standard library
    probe = ("import poe._core.codec as c, poe._core.window as w; print(c.__file__); "
             "print(w.__file__)")
    done = subprocess.run([str(python), "-P", "-c", probe], capture_output=True, text=True,
                          timeout=60, check=False, env=environ, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for line in done.stdout.split():
        path = Path(line)
        assert path.is_relative_to(env_dir), path
        assert ".debug_info" not in _elf_sections(path), f"{path} is not stripped"
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    (dist_info,) = site.glob("poe_bft-*.dist-info")
    metadata = (dist_info / "METADATA").read_text()
    assert "\nName: poe-bft\n" in metadata
    assert "License-Expression: Apache-2.0" in metadata
    assert (dist_info / "licenses" / "LICENSE").is_file()
    assert not [p for p in site.glob("*.dist-info") if p.name.startswith("poe-")]  # old name
    # both command names, one entry point (run without the dependencies: --no-deps above)
    scripts = (dist_info / "entry_points.txt").read_text()
    for command in ("poe", "poe-bft"):
        assert f"\n{command} = poe.cli.main:main\n" in scripts, scripts
        assert "from poe.cli.main import main" in (env_dir / "bin" / command).read_text()
