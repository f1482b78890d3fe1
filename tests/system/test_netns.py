"""Replicas on real network interfaces: one Linux network namespace per replica and one for
the client, joined by veth pairs to a bridge, with ``tc`` shaping every link (issue #16).

Topology (every name carries this process's pid and a random tag, so parallel runs cannot
clash; nothing is created in the namespace the tests run in)::

    namespace <base>-sw:  bridge br0 ── v-r0 … v-r3, v-c   (switch side of each veth pair)
    namespace <base>-r<i>: eth0 10.X.0.(10+i)/24, replica i (ports 7000 + 2i, 7001 + 2i)
    namespace <base>-c:    eth0 10.X.0.100/24, the client (`poe client`, `poe bench`)

Each member's eth0 sends through ``tbf rate 100mbit burst 32kbit latency 50ms``; where the
kernel has sch_netem, the switch side adds ``netem delay 2ms`` towards each member. The keys
are dealt the documented multi-host way (docs/operations.md): ``poe keygen --host`` with the
first address, then each ``[[replica]]`` table's ``host`` set to its replica's address.
Replicas run as ``ip netns exec <ns> python -P -m poe replica ...``; the bench runs in the
client's namespace; every request must be proven and the byte counters of every veth and of
every tbf qdisc must show the traffic went over them.

Needs ``ip netns add`` to work: as root with CAP_SYS_ADMIN and CAP_NET_ADMIN, or through
passwordless ``sudo -n``. Otherwise the test is skipped with the exact command that failed,
its error and the effective capabilities. Teardown (always, bounded): SIGTERM to the
replicas, SIGKILL to anything still inside a namespace (``ip netns pids``), then ``ip netns
del`` of every namespace, which takes the veths and the bridge with it. A run killed before
its teardown leaves namespaces named ``poe-t<pid>-…``: ``ip netns list`` shows them and
``ip netns del NAME`` removes them (after ``ip netns pids NAME | xargs -r kill -9``).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from syshelpers import START_TIMEOUT_S, poe_argv, run_poe

from poe.crypto.keyfile import load_cluster

REPLICAS = 4
BASE_PORT = 7000            # fixed: every namespace has its own ports
SHAPE = ("tbf", "rate", "100mbit", "burst", "32kbit", "latency", "50ms")
DELAY = ("netem", "delay", "2ms")
MIN_BYTES = 50_000          # per veth and direction; loopback-only traffic would leave ~0
CMD_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
_CAPS = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21}


class SetupError(Exception):
    """A command building the topology failed; the message is one line naming it."""


def find_tool(name: str) -> str | None:
    """``name`` on PATH, else in /usr/sbin or /sbin (not on a normal user's PATH)."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/sbin"):
        candidate = Path(directory) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def capabilities() -> str:
    """The capabilities ``ip netns`` needs, as this process holds them (effective set)."""
    try:
        status = Path("/proc/self/status").read_text()
        eff = int(re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.M).group(1), 16)
    except (OSError, AttributeError, ValueError):
        return "effective capabilities unknown"
    return ", ".join(f"{name} {'yes' if eff >> bit & 1 else 'no'}"
                     for name, bit in _CAPS.items())


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "no output"


def _try(argv: list[str]) -> str | None:
    """None if ``argv`` ran and exited 0, else one line saying what happened."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=CMD_TIMEOUT_S,
                              check=False)
    except OSError as exc:
        return f"`{shlex.join(argv)}` could not run: {exc.strerror}"
    except subprocess.TimeoutExpired:
        return f"`{shlex.join(argv)}` did not finish in {CMD_TIMEOUT_S:.0f} s"
    if done.returncode != 0:
        return (f"`{shlex.join(argv)}` exited {done.returncode}: "
                f"{_first_line(done.stderr + done.stdout)}")
    return None


def probe(prefixes: list[list[str]] | None = None,
          ip: str | None = "") -> tuple[list[str] | None, str]:
    """Find how to run ``ip netns``: (the command prefix, "") with ``[]`` when this process
    may (root with the capabilities) or ``["sudo", "-n"]`` (passwordless sudo), else (None,
    the reason: each command tried, its exit status and first line of error, this uid and
    the capabilities). Creates, enters and deletes one namespace per attempt."""
    ip = find_tool("ip") if ip == "" else ip
    if ip is None:
        return None, "`ip` (iproute2) not found on PATH, in /usr/sbin or in /sbin"
    if prefixes is None:
        prefixes = [[]]
        if os.geteuid() != 0 and shutil.which("sudo"):
            prefixes.append(["sudo", "-n"])
    failures = []
    for prefix in prefixes:
        name = f"poe-probe{os.getpid()}-{secrets.token_hex(2)}"
        failure = _try([*prefix, ip, "netns", "add", name])
        if failure is None:
            failure = _try([*prefix, ip, "netns", "exec", name, "true"])
            gone = _try([*prefix, ip, "netns", "del", name])
            failure = failure or gone
            if failure is None:
                return prefix, ""
        failures.append(failure)
    return None, (f"network namespaces not usable here (uid {os.geteuid()}, "
                  f"{capabilities()}): " + "; ".join(failures))


class Lab:
    """The namespaces, links and processes of one test; ``teardown`` removes them all."""

    def __init__(self, prefix: list[str], ip: str, tc: str, replicas: int) -> None:
        self.prefix, self.ip, self.tc = prefix, ip, tc
        self.base = f"poe-t{os.getpid()}-{secrets.token_hex(2)}"
        self.switch = f"{self.base}-sw"
        self.members = {f"r{i}": f"{self.base}-r{i}" for i in range(replicas)}
        self.members["c"] = f"{self.base}-c"
        self.subnet = 64 + os.getpid() % 128          # 10.X.0.0/24
        self.created: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.delay = False
        self.owned: list[Path] = []     # made by the commands: root's files under sudo

    def address(self, member: str) -> str:
        return f"10.{self.subnet}.0.{100 if member == 'c' else 10 + int(member[1:])}"

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        argv_full = [*self.prefix, *argv]
        try:
            done = subprocess.run(argv_full, capture_output=True, text=True,
                                  timeout=CMD_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise SetupError(f"`{shlex.join(argv_full)}` did not finish in "
                             f"{CMD_TIMEOUT_S:.0f} s") from None
        if check and done.returncode != 0:
            raise SetupError(f"`{shlex.join(argv_full)}` exited {done.returncode}: "
                             f"{_first_line(done.stderr + done.stdout)}")
        return done

    def build(self) -> None:
        ip, tc, sw = self.ip, self.tc, self.switch
        for ns in (sw, *self.members.values()):
            self.run(ip, "netns", "add", ns)
            self.created.append(ns)
            self.run(ip, "-n", ns, "link", "set", "lo", "up")
        self.run(ip, "-n", sw, "link", "add", "br0", "type", "bridge")
        self.run(ip, "-n", sw, "link", "set", "br0", "up")
        for member, ns in self.members.items():
            veth = f"v-{member}"
            self.run(ip, "-n", sw, "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                     "netns", ns)
            self.run(ip, "-n", sw, "link", "set", veth, "master", "br0")
            self.run(ip, "-n", sw, "link", "set", veth, "up")
            self.run(ip, "-n", ns, "addr", "add", f"{self.address(member)}/24", "dev", "eth0")
            self.run(ip, "-n", ns, "link", "set", "eth0", "up")
            self.run(tc, "-n", ns, "qdisc", "add", "dev", "eth0", "root", *SHAPE)
        first = self.run(tc, "-n", sw, "qdisc", "add", "dev", "v-c", "root", *DELAY,
                         check=False)
        if first.returncode == 0:
            self.delay = True
            for member in self.members:
                if member != "c":
                    self.run(tc, "-n", sw, "qdisc", "add", "dev", f"v-{member}", "root",
                             *DELAY)
        elif "unknown" not in first.stderr.lower():          # netem is optional, not errors
            raise SetupError(f"`{shlex.join(first.args)}` exited {first.returncode}: "
                             f"{_first_line(first.stderr)}")

    def command(self, member: str, argv: list[str], env: dict[str, str]) -> list[str]:
        """``argv`` inside ``member``'s namespace, with the environment that matters (PYTHONPATH,
        POE_*) and ``env`` passed explicitly: sudo would reset it."""
        values = {k: v for k, v in os.environ.items() if k == "PYTHONPATH" or k.startswith("POE_")}
        values.update(env)
        return [*self.prefix, self.ip, "netns", "exec", self.members[member], "env",
                *(f"{k}={v}" for k, v in sorted(values.items())), *argv]

    def spawn(self, member: str, argv: list[str], log: Path, cwd: Path,
              env: dict[str, str]) -> subprocess.Popen:
        with open(log, "ab") as handle:
            proc = subprocess.Popen(self.command(member, argv, env), cwd=cwd, stdout=handle,
                                    stderr=handle, start_new_session=True)
        self.procs.append(proc)
        return proc

    def execute(self, member: str, argv: list[str], cwd: Path, env: dict[str, str],
                timeout: float) -> subprocess.CompletedProcess:
        proc = subprocess.Popen(self.command(member, argv, env), cwd=cwd,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        self.procs.append(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_inside(member)
            out, err = proc.communicate(timeout=CMD_TIMEOUT_S)
            pytest.fail(f"`{shlex.join(argv)}` in namespace {self.members[member]} did not "
                        f"finish in {timeout} s:\n{err[-3000:]}")
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def link_bytes(self) -> dict[str, tuple[int, int]]:
        """Switch-side veth -> (bytes received from its member, bytes sent to it)."""
        links = json.loads(self.run(self.ip, "-j", "-s", "-n", self.switch, "link",
                                    "show").stdout)
        return {link["ifname"]: (link["stats64"]["rx"]["bytes"],
                                 link["stats64"]["tx"]["bytes"])
                for link in links if link["ifname"].startswith("v-")}

    def shaped_bytes(self, member: str) -> tuple[str, int]:
        """(kind, bytes sent) of the root qdisc of ``member``'s eth0."""
        qdiscs = json.loads(self.run(self.tc, "-j", "-s", "-n", self.members[member], "qdisc",
                                     "show", "dev", "eth0").stdout)
        root = next(q for q in qdiscs if q.get("root"))
        return root["kind"], root["bytes"]

    def pids_inside(self, member: str) -> list[str]:
        done = self.run(self.ip, "netns", "pids", self.members[member], check=False)
        return done.stdout.split() if done.returncode == 0 else []

    def kill_inside(self, member: str) -> None:
        pids = self.pids_inside(member)
        if pids:
            self.run("kill", "-KILL", *pids, check=False)

    def teardown(self) -> list[str]:
        """Stop everything, delete every namespace; returns what could not be removed."""
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.terminate()
                except (ProcessLookupError, PermissionError):
                    pass
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        problems = []
        for member, ns in self.members.items():
            if ns in self.created:
                self.kill_inside(member)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                problems.append(f"process {proc.pid} ({shlex.join(proc.args[-6:])}) survived "
                                "SIGKILL")
        for ns in reversed(self.created):
            done = self.run(self.ip, "netns", "del", ns, check=False)
            if done.returncode != 0:
                problems.append(f"`ip netns del {ns}`: {_first_line(done.stderr)}")
        listed = self.run(self.ip, "netns", "list", check=False).stdout
        problems += [f"namespace {ns} still listed" for ns in self.created
                     if re.search(rf"^{re.escape(ns)}(\s|$)", listed, re.M)]
        self.created = []
        if self.prefix:                  # sudo: the user could not delete them
            for path in self.owned:
                self.run("rm", "-rf", "--", str(path), check=False)
        return problems


@pytest.fixture(scope="module")
def privilege():
    prefix, reason = probe()
    if prefix is None:
        pytest.skip(reason)
    return prefix


@pytest.fixture
def lab(privilege):
    ip, tc = find_tool("ip"), find_tool("tc")
    if tc is None:
        pytest.skip("`tc` (iproute2) not found on PATH, in /usr/sbin or in /sbin")
    made = Lab(privilege, ip, tc, REPLICAS)
    try:
        made.build()
    except SetupError as exc:
        problems = made.teardown()
        pytest.skip(f"network namespace topology could not be built: {exc}"
                    + (f" (and teardown: {'; '.join(problems)})" if problems else ""))
    try:
        yield made
    finally:
        problems = made.teardown()
        assert not problems, "teardown left: " + "; ".join(problems)


def _per_replica_hosts(cluster_toml: Path, hosts: list[str]) -> None:
    """Set each ``[[replica]]`` table's ``host`` (docs/operations.md, multi-host)."""
    text = cluster_toml.read_text()
    for i, host in enumerate(hosts):
        text, count = re.subn(rf'(\[\[replica\]\]\nid = {i}\nhost = )"[^"]*"',
                              rf'\1"{host}"', text)
        assert count == 1, f"replica {i}'s host line not found in {cluster_toml}"
    cluster_toml.write_text(text)


def _wait_ready(procs: dict[int, subprocess.Popen], logs: dict[int, Path]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    pending = set(procs)
    while pending:
        for i in sorted(pending):
            text = logs[i].read_text(errors="replace")
            if '"event":"ready"' in text:
                pending.discard(i)
            elif procs[i].poll() is not None:
                pytest.fail(f"replica {i} exited at start-up (status {procs[i].returncode}):"
                            f"\n{text[-3000:]}")
        assert time.monotonic() < deadline, \
            f"replicas {sorted(pending)} not ready in {START_TIMEOUT_S} s"
        time.sleep(0.05)


def test_replicas_in_network_namespaces_prove_every_request_over_shaped_veths(tmp_path, lab):
    hosts = [lab.address(f"r{i}") for i in range(REPLICAS)]
    keys = tmp_path / "keys"
    done = run_poe(tmp_path, "keygen", "--replicas", str(REPLICAS), "--clients", "8",
                   "--out", str(keys), "--host", hosts[0], "--base-port", str(BASE_PORT),
                   "--mode", "ts", timeout=60)
    assert done.returncode == 0, done.stderr
    _per_replica_hosts(keys / "cluster.toml", hosts)
    assert [r.host for r in load_cluster(keys / "cluster.toml").replicas] == hosts
    config = keys / "poe.toml"
    env = {"POE_LOCK_DIR": str(tmp_path / "locks")}    # made by the client, its owner
    lab.owned.append(tmp_path / "locks")

    procs, logs = {}, {}
    for i in range(REPLICAS):
        logs[i] = tmp_path / f"replica-{i}.log"
        procs[i] = lab.spawn(f"r{i}", poe_argv("replica", "--config", str(config), "--id",
                                                str(i), "--set", "replica.status_interval_s=1"),
                             logs[i], tmp_path, env)
    _wait_ready(procs, logs)
    for i in range(REPLICAS):             # each listens on its own address, not loopback
        assert f"tcp://{hosts[i]}:{BASE_PORT + 2 * i}" in logs[i].read_text()

    before = lab.link_bytes()
    put = lab.execute("c", poe_argv("client", "--config", str(config), "put", "7", "hello"),
                      tmp_path, env, timeout=120)
    assert put.returncode == 0, put.stderr
    assert put.stdout.startswith("put 7: OK\nproof: "), put.stdout
    record_path = tmp_path / "run.json"
    bench = lab.execute("c", poe_argv("bench", "--config", str(config), "--clients", "4",
                                      "--outstanding", "2", "--warmup", "1", "--duration", "3",
                                      "--json", str(record_path)),
                        tmp_path, env, timeout=180)
    assert bench.returncode == 0, bench.stdout + bench.stderr
    results = json.loads(record_path.read_text())["results"]
    assert results["measured_requests"] > 0, results
    assert results["proven_requests"] == results["measured_requests"], results
    assert results["outcome_unknown"] == 0, results

    after = lab.link_bytes()
    assert sorted(after) == sorted(f"v-{m}" for m in lab.members), after
    for veth, (rx, tx) in after.items():
        rx0, tx0 = before[veth]
        assert rx - rx0 >= MIN_BYTES and tx - tx0 >= MIN_BYTES, \
            f"{veth}: {rx - rx0} bytes in, {tx - tx0} bytes out during the bench"
    for member in lab.members:
        kind, sent = lab.shaped_bytes(member)
        assert kind == "tbf" and sent >= MIN_BYTES, (member, kind, sent)
    print(f"netns: {results['throughput_rps']:,.0f} req/s, p50 "
          f"{results['latency_ms']['p50']} ms over tbf 100mbit"
          + (" + netem 2ms" if lab.delay else " (no sch_netem: no delay)") + "; bytes in/out "
          + ", ".join(f"{v}: {after[v][0] - before[v][0]:,}/{after[v][1] - before[v][1]:,}"
                      for v in sorted(after)))

    for proc in procs.values():
        proc.terminate()
    for i, proc in procs.items():
        assert proc.wait(STOP_TIMEOUT_S) == 0, logs[i].read_text()[-3000:]
        exits = [json.loads(line) for line in logs[i].read_text().splitlines()
                 if '"event":"exit"' in line]
        assert exits and exits[-1]["executed"] > 0, logs[i].read_text()[-3000:]


PROVE = test_replicas_in_network_namespaces_prove_every_request_over_shaped_veths


# ---------------------------------------------------------------------------------------------
# the skip path, exercised wherever this runs
# ---------------------------------------------------------------------------------------------

def test_probe_names_the_command_that_failed_without_privileges():
    """As an unprivileged user (setpriv to uid/gid 65534, which drops every capability) `ip
    netns add` fails: the reason names that command, its exit status and error, the uid and
    the capabilities."""
    setpriv, ip = find_tool("setpriv"), find_tool("ip")
    if os.geteuid() != 0 or setpriv is None or ip is None:
        pytest.skip("needs root, setpriv and ip to run `ip netns add` as uid 65534")
    nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    prefix, reason = probe([nobody], ip)
    assert prefix is None
    assert reason.startswith(f"network namespaces not usable here (uid 0, {capabilities()}): "
                             f"`{shlex.join(nobody)} {ip} netns add poe-probe{os.getpid()}-")
    assert re.search(r"` exited [1-9]\d*: \S", reason), reason
    assert "not permitted" in reason.lower(), reason
    assert "\n" not in reason


def test_probe_without_ip_says_so():
    prefix, reason = probe([[]], None)
    assert prefix is None
    assert reason == "`ip` (iproute2) not found on PATH, in /usr/sbin or in /sbin"
    prefix, reason = probe([[]], "/nonexistent/ip")
    assert prefix is None
    assert reason.startswith("network namespaces not usable here (uid ")
    assert "`/nonexistent/ip netns add poe-probe" in reason and "could not run: " in reason


def test_capabilities_are_read_from_proc():
    text = capabilities()
    assert re.fullmatch(r"CAP_NET_ADMIN (yes|no), CAP_SYS_ADMIN (yes|no)", text), text


def test_the_netns_test_skips_with_the_reason_when_unprivileged():
    """The namespace test run by pytest as uid 65534: skipped (not failed, not passed) with
    the reason naming `ip netns add` and its error."""
    setpriv = find_tool("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to run pytest as uid 65534")
    here = Path(__file__).resolve()
    nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    readable = subprocess.run([*nobody, sys.executable, "-c", f"open({str(here)!r}).read()"],
                              capture_output=True, timeout=60, check=False)
    if readable.returncode != 0:
        pytest.skip(f"uid 65534 cannot read {here} or run {sys.executable}")
    scratch = Path(tempfile.mkdtemp(prefix="poe-netns-skip-"))   # tmp_path is root-only
    try:
        scratch.chmod(0o777)
        env = dict(os.environ, HOME=str(scratch), PYTHONDONTWRITEBYTECODE="1",
                   COLUMNS="1000")
        argv = [*nobody, sys.executable, "-m", "pytest", f"{here}::{PROVE.__name__}",
                "-p", "no:cacheprovider", "-rs", "-q", f"--basetemp={scratch / 'base'}",
                f"--rootdir={here.parents[2]}"]
        done = subprocess.run(argv, cwd=scratch, capture_output=True, text=True, timeout=120,
                              env=env, check=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"^1 skipped", done.stdout, re.M), done.stdout[-3000:]
    skipped = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 1, done.stdout[-3000:]
    assert ("network namespaces not usable here (uid 65534, CAP_NET_ADMIN no, CAP_SYS_ADMIN "
            "no): `") in skipped[0], skipped[0]
    assert " netns add poe-probe" in skipped[0] and "exited" in skipped[0], skipped[0]
