"""Deployment files (issue #16, "Beyond one machine"): the Dockerfile, deploy/compose.yaml
(4 replicas + a bench client), deploy/compose-keygen.sh and the systemd template unit
deploy/poe-replica@.service.

No Docker engine is needed (nor used): these tests check the files statically against the
real `poe` command line — every subcommand and option they use appears in `poe <sub>
--help`, every `--set` names a setting and a valid value — and run what runs without
Docker: the compose keygen script (real `poe keygen`, replica hosts replica0..3, loaded back
with the compose replicas' overrides), the image's HEALTHCHECK command against a local HTTP
server, and `systemd-analyze verify` on the unit where systemd-analyze exists. Building the
image and starting the cluster are not tested here. About 5 s.
"""
from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import threading
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
pytestmark = pytest.mark.skipif(not (DEPLOY / "compose.yaml").is_file(),
                                reason="needs the source checkout (deploy/)")

REPLICAS = 4
METRICS_PORT = 9400
DATA_DIR = "/var/lib/poe"
CONFIG_DIR = "/etc/poe"


# ------------------------------------------------------------------------------------------
# a YAML subset: block mappings, block sequences of scalars, one-line or multi-line flow
# sequences of JSON strings, quoted and plain scalars, comments. compose.yaml keeps to it
# (PyYAML is not a dependency); with PyYAML installed both readings must agree.
# ------------------------------------------------------------------------------------------

def _scalar(text: str):
    text = text.strip()
    if text.startswith(("[", '"')):
        return json.loads(text)
    if text.startswith("'"):
        return text[1:-1]
    return text


def _strip_comment(line: str) -> str:
    out, quote = [], None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            break
        out.append(ch)
    return "".join(out).rstrip()


def parse_yaml_subset(text: str):
    lines: list[tuple[int, str]] = []
    pending = None
    for raw in text.splitlines():
        line = _strip_comment(raw)
        if pending is not None:                       # inside a multi-line flow sequence
            pending = (pending[0], pending[1] + " " + line.strip())
            if pending[1].count("[") == pending[1].count("]"):
                lines.append(pending)
                pending = None
            continue
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        if line.count("[") > line.count("]"):
            pending = (indent, line.strip())
            continue
        lines.append((indent, line.strip()))
    assert pending is None, "unterminated flow sequence"
    pos = 0

    def block(indent: int):
        nonlocal pos
        if lines[pos][1].startswith("- "):
            items = []
            while pos < len(lines) and lines[pos][0] == indent and lines[pos][1].startswith("- "):
                items.append(_scalar(lines[pos][1][2:]))
                pos += 1
            return items
        mapping = {}
        while pos < len(lines) and lines[pos][0] == indent:
            key, sep, rest = lines[pos][1].partition(":")
            assert sep, f"not a mapping entry: {lines[pos][1]!r}"
            pos += 1
            key = _scalar(key)
            assert key not in mapping, f"duplicate key {key!r}"
            if rest.strip():
                mapping[key] = _scalar(rest)
            elif pos < len(lines) and lines[pos][0] > indent:
                mapping[key] = block(lines[pos][0])
            else:
                mapping[key] = None
        return mapping

    document = block(0)
    assert pos == len(lines), f"unparsed from line {lines[pos]!r}"
    return document


@cache
def compose() -> dict:
    text = (DEPLOY / "compose.yaml").read_text()
    document = parse_yaml_subset(text)
    try:
        import yaml
    except ImportError:
        return document
    assert yaml.safe_load(text) == document
    return document


# ------------------------------------------------------------------------------------------
# the real command line
# ------------------------------------------------------------------------------------------

@cache
def help_text(*words: str) -> str:
    # -P: the installed package, not the checkout's (whose kernels are not built in CI)
    done = subprocess.run([sys.executable, "-P", "-m", "poe", *words, "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, (words, done.stderr)
    return done.stdout


def check_command(argv: list[str]) -> None:
    """``argv`` (after ``poe``) names a real subcommand and only options it has; each
    ``--set`` is a known setting with a valid value."""
    from poe.config import SETTINGS, parse_override

    sub = argv[0]
    assert re.search(rf"^\s+{sub}\s", help_text(), re.MULTILINE), f"poe has no subcommand {sub!r}"
    words = [sub]
    if sub == "ledger":                   # nested: `poe ledger verify --data ...`
        words.append(argv[1])
    text = help_text(*words)
    by_key = {s.key: s for s in SETTINGS}
    for i, arg in enumerate(argv):
        if not arg.startswith("--"):
            continue
        option = arg.split("=", 1)[0]
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), \
            f"`poe {' '.join(words)}` has no option {option}"
        if option == "--set":
            key, value = parse_override(argv[i + 1])
            assert key in by_key, f"--set {key}: no such setting"
            assert by_key[key].problem(value) is None, (key, value)


def option_value(argv: list[str], option: str) -> str:
    return argv[argv.index(option) + 1]


def overrides(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]


def poe_keygen_script(tmp_path: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, POE=f"{shlex.quote(sys.executable)} -P -m poe")
    return subprocess.run(["sh", str(DEPLOY / "compose-keygen.sh"), str(out), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


# ------------------------------------------------------------------------------------------
# compose.yaml
# ------------------------------------------------------------------------------------------

def test_compose_services_and_volumes():
    doc = compose()
    services = doc["services"]
    assert set(services) == {"keygen", "bench"} | {f"replica{i}" for i in range(REPLICAS)}
    images = {s["image"] for s in services.values()}
    assert len(images) == 1, images
    for service in services.values():                  # each builds the one image
        assert service["build"] == {"context": "..", "dockerfile": "Dockerfile"}
        assert (DEPLOY / service["build"]["context"] / "Dockerfile").resolve() == DOCKERFILE
    data_volumes = []
    for i in range(REPLICAS):
        s = services[f"replica{i}"]
        assert s["hostname"] == f"replica{i}"
        mounts = dict(v.split(":", 1) for v in s["volumes"])
        assert mounts["keys"] == f"{CONFIG_DIR}:ro"
        (data,) = [name for name, where in mounts.items() if where == DATA_DIR]
        data_volumes.append(data)
        assert s["depends_on"] == {"keygen": {"condition": "service_completed_successfully"}}
        assert s["ports"] == [f"127.0.0.1:{METRICS_PORT + i}:{METRICS_PORT + i}"]
        assert s["environment"]["POE_HEALTH_URL"] == \
            f"http://127.0.0.1:{METRICS_PORT + i}/metrics"
    assert len(set(data_volumes)) == REPLICAS, "each replica needs its own data volume"
    bench = services["bench"]
    assert bench["depends_on"] == {f"replica{i}": {"condition": "service_healthy"}
                                   for i in range(REPLICAS)}
    assert f"keys:{CONFIG_DIR}:ro" in bench["volumes"]
    named = {v.split(":", 1)[0] for s in services.values() for v in s["volumes"]
             if not v.startswith(".")}
    assert named == set(doc["volumes"]), "every named volume declared, none unused"


def test_compose_replica_commands_are_real():
    services = compose()["services"]
    for i in range(REPLICAS):
        argv = services[f"replica{i}"]["command"]
        assert argv[0] == "replica"
        check_command(argv)
        assert option_value(argv, "--id") == str(i)
        assert option_value(argv, "--config") == f"{CONFIG_DIR}/poe.toml"
        sets = dict(o.split("=", 1) for o in overrides(argv))
        assert sets["replica.data_dir"] == DATA_DIR
        assert sets["replica.metrics_port"] == str(METRICS_PORT)
        assert sets["replica.metrics_host"] == "0.0.0.0"     # reachable from outside
        assert sets["transport.bind_host"] == "0.0.0.0"


def test_compose_bench_command_is_real():
    argv = compose()["services"]["bench"]["command"]
    assert argv[0] == "bench"
    check_command(argv)
    assert option_value(argv, "--config") == f"{CONFIG_DIR}/poe.toml"
    assert option_value(argv, "--json").startswith(DATA_DIR + "/")


def test_compose_keygen_script_and_options():
    keygen = compose()["services"]["keygen"]
    script_mount = next(v for v in keygen["volumes"] if v.startswith("./"))
    source, target, mode = script_mount.split(":")
    assert (DEPLOY / source).resolve() == DEPLOY / "compose-keygen.sh" and mode == "ro"
    assert keygen["entrypoint"] == ["/bin/sh", target]
    assert f"keys:{CONFIG_DIR}" in keygen["volumes"]
    out, replicas, clients, *extra = keygen["command"]
    assert out == CONFIG_DIR and int(replicas) == REPLICAS and int(clients) >= 8
    script = (DEPLOY / "compose-keygen.sh").read_text()
    (line,) = [ln for ln in script.splitlines() if ln.strip().startswith("$poe keygen")]
    check_command(["keygen", *shlex.split(line)[2:], *extra])


def test_compose_keygen_writes_replica_hostnames(tmp_path):
    """The keygen service's script, run for real: `poe keygen` accepts the host names,
    replica i gets host "replica<i>", the result loads with each replica's overrides, the
    secrets stay 0600, and a second run keeps the keys."""
    from poe.config import load_config

    keygen = compose()["services"]["keygen"]
    out = tmp_path / "keys"
    out.mkdir(mode=0o700)
    done = poe_keygen_script(tmp_path, out, *keygen["command"][1:])
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (out / ".keygen").exists()
    for path in out.glob("*.secret.toml"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    services = compose()["services"]
    ports = set()
    for i in range(REPLICAS):
        argv = services[f"replica{i}"]["command"]
        sets = [o for o in overrides(argv) if not o.startswith("replica.data_dir=")]
        config = load_config(out / "poe.toml", [*sets, f"replica.data_dir={tmp_path}/data"])
        me = config.cluster.replicas[i]
        assert me.host == f"replica{i}"
        assert config.secret_path("replica", i).is_file()
        ports |= {me.replica_port, me.client_port}
    assert ports <= dockerfile_exposed(), "EXPOSE covers the replicas' ports"
    cluster_id = config.cluster.cluster_id
    again = poe_keygen_script(tmp_path, out, *keygen["command"][1:])
    assert again.returncode == 0 and "keeping" in again.stdout, again.stderr
    assert load_config(out / "poe.toml").cluster.cluster_id == cluster_id


# ------------------------------------------------------------------------------------------
# Dockerfile
# ------------------------------------------------------------------------------------------

@cache
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            word, _, rest = current.strip().partition(" ")
            joined.append((word.upper(), rest.strip()))
        current = ""
    return joined


def runtime_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    starts = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    return instructions[starts[-1]:]


def dockerfile_exposed() -> set[int]:
    ports = set()
    for word, rest in runtime_stage():
        if word == "EXPOSE":
            for spec in rest.split():
                low, _, high = spec.split("/")[0].partition("-")
                ports |= set(range(int(low), int(high or low) + 1))
    return ports


def test_dockerfile_stages_user_entrypoint_volume():
    stages = [rest for word, rest in dockerfile() if word == "FROM"]
    assert len(stages) == 2 and stages[0].endswith(" AS build") \
        and stages[1].endswith(" AS runtime")
    assert all(s.startswith("python:${PYTHON_VERSION}-slim") for s in stages)
    runtime = dict(runtime_stage())          # the last of each instruction in the stage
    assert json.loads(runtime["ENTRYPOINT"]) == ["poe"]
    assert runtime["USER"] not in ("root", "0") and runtime["USER"] == "poe"
    assert DATA_DIR in json.loads(runtime["VOLUME"])
    assert "gcc" not in " ".join(r for w, r in runtime_stage() if w == "RUN"), \
        "no compiler in the runtime image"
    assert {METRICS_PORT + i for i in range(REPLICAS)} <= dockerfile_exposed()


def test_dockerfile_copies_what_the_build_needs():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for word, rest in dockerfile():
        if word == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), source
                assert source not in ignored, f"{source} is in .dockerignore"
    for must in (".git", ".venv", "build", "dist", "keys", "**/*.secret.toml"):
        assert must in ignored, must


def _healthcheck_code() -> str:
    (rest,) = [r for w, r in runtime_stage() if w == "HEALTHCHECK"]
    argv = json.loads(rest[rest.index("CMD") + 3:].strip())
    assert argv[:2] == ["python", "-c"]
    return argv[2]


class _Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/metrics" else 404)
        self.end_headers()
        self.wfile.write(b"poe_view 0\n")

    def log_message(self, *args):
        pass


def test_healthcheck_command(tmp_path):
    code = _healthcheck_code()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]

        def probe(url):
            env = {k: v for k, v in os.environ.items() if k != "POE_HEALTH_URL"}
            if url is not None:
                env["POE_HEALTH_URL"] = url
            return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                  timeout=30, check=False).returncode

        assert probe(None) == 0                                   # nothing to probe
        assert probe(f"http://127.0.0.1:{port}/metrics") == 0
        assert probe(f"http://127.0.0.1:{port}/missing") != 0     # 404
        server.shutdown()
        server.server_close()
        assert probe(f"http://127.0.0.1:{port}/metrics") != 0     # nothing listening
    finally:
        server.server_close()


# ------------------------------------------------------------------------------------------
# systemd unit
# ------------------------------------------------------------------------------------------

def unit() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / "poe-replica@.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_systemd_unit_exec_start_and_hardening():
    u = unit()
    argv = shlex.split(u["ExecStart"])
    assert argv[0].endswith("/poe") and argv[1] == "replica"
    check_command(argv[1:])
    assert option_value(argv, "--id") == "%i"
    data = dict(o.split("=", 1) for o in overrides(argv))["replica.data_dir"]
    assert data in u["ReadWritePaths"].split() and data == f"/var/lib/{u['StateDirectory']}"
    assert u["User"] == "poe" and u["Restart"] == "on-failure"
    assert u["RestartPreventExitStatus"] == "2"          # config / key / damaged store
    assert u["NoNewPrivileges"] == "yes" and u["ProtectSystem"] == "strict"
    assert int(u["LimitNOFILE"]) >= 4096


def test_systemd_unit_verifies(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    text = (DEPLOY / "poe-replica@.service").read_text()
    exec_start = shlex.split(unit()["ExecStart"])[0]
    # verify checks the binary exists: point it at one that does
    (tmp_path / "poe-replica@2.service").write_text(text.replace(exec_start, "/bin/true"))
    done = subprocess.run([analyze, "verify", str(tmp_path / "poe-replica@2.service")],
                          capture_output=True, text=True, timeout=60, check=False)
    problems = [ln for ln in done.stderr.splitlines() if "poe-replica@2.service" in ln]
    assert done.returncode == 0 and not problems, done.stderr


# ------------------------------------------------------------------------------------------
# docs/operations.md: the deployment sections' commands
# ------------------------------------------------------------------------------------------

def test_operations_doc_commands_are_real():
    """Every `poe <subcommand> ...` in the "Multi-host deployment" and "One Docker host"
    sections (code blocks and inline code, wrapped lines joined) uses real options."""
    text = (ROOT / "docs" / "operations.md").read_text()
    start = text.index("## Multi-host deployment")
    end = text.index("## ", text.index("## One Docker host", start) + 3)
    section = re.sub(r"\n +", " ", text[start:end])      # join wrapped list items
    spans = re.findall(r"```sh\n(.*?)```", section, re.DOTALL) + re.findall(r"`([^`\n]+)`", section)
    commands = []
    for span in spans:
        for line in span.replace("\\\n", " ").splitlines():
            for match in re.finditer(r"(?:^|[\s/])poe ((?:keygen|replica|cluster|bench|client"
                                     r"|ledger)(?=\s|$)[^|&;#]*)", line):
                commands.append(shlex.split(match.group(1)))
    subs = {argv[0] for argv in commands}
    assert {"keygen", "replica", "bench", "client", "ledger"} <= subs, subs
    for argv in commands:
        check_command(argv)
