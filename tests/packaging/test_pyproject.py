"""Packaging metadata (issue #16), checked without building anything (under a second):

* names: the distribution is poe-bft ("poe" on PyPI is another project), the import package
  and the `poe` command stay, `poe-bft` is a second name for the same entry point, and
  `python -m poe` runs it; no file still installs or names a distribution called "poe";
* supported Pythons 3.11-3.13, and a BLS backend on each: blspy only where it has wheels
  (< 3.13), pyblst where it has not;
* cibuildwheel builds cp311, cp312 and cp313 wheels (x86_64, aarch64) and tests each with
  the run .ci/run does: the same extras, the same pytest options, from the checkout, through
  the `pytest` console script (which keeps the checkout off sys.path, so the installed wheel
  is what `import poe` finds).
"""
from __future__ import annotations

import ast
import fnmatch
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

import poe

ROOT = Path(__file__).resolve().parents[2]
CI_RUN = ROOT / ".ci" / "run"
pytestmark = pytest.mark.skipif(not (ROOT / "pyproject.toml").is_file() or not CI_RUN.is_file(),
                                reason="needs the source checkout (pyproject.toml, .ci/run)")

DISTRIBUTION = "poe-bft"
SUPPORTED = ("3.11", "3.12", "3.13")
ENTRY = "poe.cli.main:main"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def ci_lines() -> list[list[str]]:
    """The commands of .ci/run (comments and blank lines dropped), each split as sh would."""
    text = CI_RUN.read_text().replace("\\\n", " ")          # continuation lines
    return [shlex.split(line, comments=True) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def ci_extras() -> list[str]:
    """The extras of the checkout that .ci/run installs (`pip install '.[a,b]'`)."""
    found = [word for words in ci_lines() if "pip" in " ".join(words[:3]) and "install" in words
             for word in words if word.startswith(".[")]
    assert len(found) == 1, found
    match = re.fullmatch(r"\.\[([a-z0-9_,-]+)\]", found[0])
    assert match, found[0]
    return match.group(1).split(",")


def ci_pytest() -> list[str]:
    """.ci/run's pytest command line."""
    found = [words for words in ci_lines() if words and Path(words[0]).name == "pytest"]
    assert len(found) == 1, found
    return found[0]


# --- names ------------------------------------------------------------------------------------

def test_distribution_name_commands_and_python_m() -> None:
    project = pyproject()["project"]
    assert project["name"] == DISTRIBUTION
    scripts = project["scripts"]
    assert scripts["poe"] == scripts["poe-bft"] == ENTRY
    # python -m poe: poe/__main__.py calls the same main
    tree = ast.parse((ROOT / "poe" / "__main__.py").read_text())
    imports = [(n.module, [a.name for a in n.names]) for n in ast.walk(tree)
               if isinstance(n, ast.ImportFrom)]
    assert ("poe.cli.main", ["main"]) in imports
    done = subprocess.run([sys.executable, "-P", "-m", "poe", "--version"], capture_output=True,
                          text=True, timeout=60, check=False, cwd=ROOT.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"poe {poe.__version__}"


# files that say how to install or build the package, and what they may no longer say
NAMING_FILES = ["README.md", "Dockerfile", "MANIFEST.in", ".ci/run", "docs/*.md", "deploy/*",
                "tests/packaging/*.py", "poe/**/*.py"]
OLD_NAME = [
    re.compile(r"(?<![\w./-])poe\["),                        # extras of a "poe" distribution
    re.compile(r"(?<![\w.-])poe-(\*|\d+\.\d+)"),             # its sdist or dist-info names
    re.compile(r"pip3? (install|download|wheel)\b[^\n]*?(?<![\w./-])['\"]?poe['\"]?(?=\s|$)"),
    re.compile(r"--find-links[= ]\S+\s+poe(?=\s|$)"),
]


def test_no_file_names_the_old_distribution() -> None:
    found = []
    for pattern in NAMING_FILES:
        for path in sorted(ROOT.glob(pattern)):
            if not path.is_file() or path.name == Path(__file__).name:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if any(regex.search(line) for regex in OLD_NAME):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_old_name_patterns_catch_what_they_should() -> None:
    bad = ["pip install 'poe[fast]'", "pip install dist/poe-*.tar.gz", "site.glob('poe-*')",
           "pip install --no-index --find-links=/wheels poe", "pip install poe", "poe-0.1.0"]
    good = ["pip install 'poe-bft[fast]'", "dist/poe_bft-*.tar.gz", "pip install .",
            "--find-links=/wheels poe-bft", "docker run --name poe-2", "poe-replica@2",
            "ENTRYPOINT [\"poe\"]", "/opt/poe/bin/pip install ./poe"]
    assert all(any(r.search(text) for r in OLD_NAME) for text in bad)
    assert not [text for text in good if any(r.search(text) for r in OLD_NAME)]


def test_dockerfile_installs_the_distribution() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"--find-links=/wheels\s+poe-bft\s", text)


# --- Pythons and BLS backends -------------------------------------------------------------------

def requirements() -> dict[str, Requirement]:
    return {Requirement(r).name: Requirement(r) for r in pyproject()["project"]["dependencies"]}


def wanted_on(version: str) -> set[str]:
    env = {"python_version": version, "python_full_version": f"{version}.0"}
    return {name for name, req in requirements().items()
            if req.marker is None or req.marker.evaluate(env)}


@pytest.mark.parametrize("version", SUPPORTED)
def test_each_supported_python_gets_one_bls_backend(version) -> None:
    assert version + ".0" in SpecifierSet(pyproject()["project"]["requires-python"])
    assert f"Programming Language :: Python :: {version}" in pyproject()["project"]["classifiers"]
    backends = wanted_on(version) & {"blspy", "pyblst"}
    # blspy has wheels for 3.11 and 3.12 only: never ask for it on 3.13
    assert backends == ({"blspy"} if version < "3.13" else {"pyblst"}), backends
    assert {"pynacl", "xxhash", "pyzmq", "numpy", "prometheus-client"} <= wanted_on(version)


def test_pyblst_extras_and_versions_agree() -> None:
    project = pyproject()["project"]
    pins = {str(Requirement(r).specifier) for extra in ("fast", "test")
            for r in project["optional-dependencies"][extra] if r.startswith("pyblst")}
    pins.add(str(requirements()["pyblst"].specifier))
    assert len(pins) == 1, pins


# --- cibuildwheel -------------------------------------------------------------------------------

def test_cibuildwheel_builds_cp311_to_cp313_on_both_architectures() -> None:
    config = pyproject()["tool"]["cibuildwheel"]
    build, skip = config["build"].split(), config["skip"].split()
    assert set(config["linux"]["archs"]) == {"x86_64", "aarch64"}
    for version in SUPPORTED:
        tag = "cp" + version.replace(".", "")
        for arch in ("x86_64", "aarch64"):
            identifier = f"{tag}-manylinux_{arch}"
            assert any(fnmatch.fnmatch(identifier, p) for p in build), identifier
            assert not any(fnmatch.fnmatch(identifier, p) for p in skip), identifier
    assert not any(fnmatch.fnmatch("cp310-manylinux_x86_64", p) for p in build)


def test_cibuildwheel_tests_install_what_ci_installs() -> None:
    config = pyproject()["tool"]["cibuildwheel"]
    assert config["test-extras"] == ci_extras() == ["test", "bench"]
    assert set(ci_extras()) <= set(pyproject()["project"]["optional-dependencies"])


def test_cibuildwheel_test_command_is_the_ci_run() -> None:
    config = pyproject()["tool"]["cibuildwheel"]
    steps = [shlex.split(step) for step in config["test-command"].split("&&")]
    assert steps[0] == ["cd", "{project}"], steps      # pyproject's testpaths and conftest apply
    command = steps[-1]
    ci = ci_pytest()
    # the console script, never `python -m pytest` (that would put the checkout on sys.path
    # and test the source tree instead of the wheel)
    assert command[0] == "pytest" and Path(ci[0]).name == "pytest"
    assert command[1:] == ci[1:] and "--benchmark-disable" in ci
    values = {i + 1 for i, word in enumerate(command) if word == "-p"}   # -p NAME
    assert not [word for i, word in enumerate(command[1:], 1)
                if not word.startswith("-") and i not in values], \
        "no paths: testpaths (tests and benchmarks) decide what runs, as in .ci/run"
    assert pyproject()["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests", "benchmarks"]
