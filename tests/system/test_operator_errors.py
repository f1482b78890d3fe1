"""Operator and new-user experience (issue #16), with real ``poe`` processes: every start-up
mistake is one line on stderr and a non-zero exit (never a hang or a traceback), piping into
``head`` ends quietly, ``poe bench`` fails when a request's outcome is unknown, two clients
never share a client id on one host, a write answered STALE is reported as not executed, and
a view change shows in the replicas' INFO log."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from syshelpers import keygen, poe_argv, run_poe

from poe import __version__
from poe._core import codec
from poe.config import load_config
from poe.crypto.keyfile import load_cluster
from poe.protocol.poe.client import Completed
from poe.runtime.client import ClientProcess
from poe.runtime.lease import ClientLease


def _one_line(done: subprocess.CompletedProcess, command: str, status: int = 2) -> str:
    assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"poe {command}: error: "), lines[0]
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    return keygen(tmp_path_factory.mktemp("keys"))


def _copy_keys(keys: Path, to: Path) -> Path:
    to.mkdir()
    for path in keys.parent.iterdir():
        if path.is_file():
            (to / path.name).write_bytes(path.read_bytes())
            (to / path.name).chmod(path.stat().st_mode & 0o777)
    return to / "poe.toml"


# ---------------------------------------------------------------------------------------------
# the command line itself
# ---------------------------------------------------------------------------------------------

def test_version_and_help_with_defaults(tmp_path):
    done = run_poe(tmp_path, "--version", timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"poe {__version__}"
    bench = run_poe(tmp_path, "bench", "--help", timeout=60).stdout
    assert re.search(r"--clients CLIENTS\s+closed-loop clients \(default: 8\)", bench), bench
    assert "(default: 0.99)" in bench                        # --theta
    replica = run_poe(tmp_path, "replica", "--help", timeout=60).stdout
    assert "--insecure-bench" in replica and "(default: False)" not in replica
    sim = run_poe(tmp_path, "sim", "--help", timeout=60).stdout
    assert "(default: None)" not in sim


def test_output_piped_into_a_reader_that_stops_ends_quietly(tmp_path):
    proc = subprocess.Popen(poe_argv("sim", "--seed", "1", "--replicas", "4", "--requests",
                                     "2000", "--trace"), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout.readline()                      # `| head -1`
        proc.stdout.close()
        status = proc.wait(120)
        err = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert status == 141, err                             # 128 + SIGPIPE, like a shell tool
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_keygen_refuses_fewer_than_four_replicas_unless_asked(tmp_path):
    line = _one_line(run_poe(tmp_path, "keygen", "--replicas", "3", "--clients", "1", "--out",
                             str(tmp_path / "k"), timeout=60), "keygen")
    assert "tolerates no faulty replica" in line and "--allow-f0" in line
    assert not (tmp_path / "k").exists()
    done = run_poe(tmp_path, "keygen", "--replicas", "3", "--clients", "1", "--out",
                   str(tmp_path / "k"), "--allow-f0", timeout=60)
    assert done.returncode == 0, done.stderr
    assert "f = 0" in done.stdout and "tolerates no faulty or crashed replica" in done.stdout


# ---------------------------------------------------------------------------------------------
# replica start-up
# ---------------------------------------------------------------------------------------------

def test_a_data_dir_that_is_a_file_or_unusable_is_one_line(tmp_path, keys):
    config = str(keys)
    (tmp_path / "plain-file").write_text("not a directory")
    for data_dir in (tmp_path / "plain-file", tmp_path / "plain-file" / "below",
                     Path("/proc/poe-no-such-dir")):
        line = _one_line(run_poe(tmp_path, "replica", "--config", config, "--id", "0", "--set",
                                 f"replica.data_dir={data_dir}", timeout=60), "replica")
        assert "replica.data_dir" in line and str(data_dir) in line
        assert "quarantine" not in line
    if os.geteuid() != 0:                                 # root writes anywhere
        locked = tmp_path / "locked"
        (locked / "replica-0").mkdir(parents=True)
        (locked / "replica-0").chmod(0o500)
        line = _one_line(run_poe(tmp_path, "replica", "--config", config, "--id", "0", "--set",
                                 f"replica.data_dir={locked}", timeout=60), "replica")
        assert "not writable" in line


def test_a_secret_file_of_another_replica_is_refused(tmp_path, keys):
    config = _copy_keys(keys, tmp_path / "keys")
    mine = config.parent / "replica-1.secret.toml"
    mine.write_bytes((config.parent / "replica-2.secret.toml").read_bytes())
    line = _one_line(run_poe(tmp_path, "replica", "--config", str(config), "--id", "1",
                             timeout=60), "replica")
    assert "holds the secret keys of replica 2, not of replica 1" in line
    assert "cluster.toml's entry for replica 1" in line


def test_a_port_in_use_is_one_line_not_a_hang(tmp_path, keys, local_cluster):
    cluster = local_cluster(keys)
    cluster.start(0)
    cluster.wait_ready(0)
    port = load_cluster(keys.parent / "cluster.toml").replicas[0].replica_port
    started = time.monotonic()
    done = run_poe(tmp_path, "replica", "--config", str(keys), "--id", "0", "--log",
                   str(tmp_path / "second.log"), timeout=60)
    line = _one_line(done, "replica", status=1)
    assert f"port {port} on 127.0.0.1 already in use" in line
    assert time.monotonic() - started < 30
    assert '"event":"bind-failed"' in (tmp_path / "second.log").read_text()
    assert cluster.stop()[0]["status"] == 0               # the first one is unharmed


def test_ledger_verify_with_the_wrong_config_says_what_differs(tmp_path, keys):
    from poe.runtime.replica import ReplicaRuntime

    config = _copy_keys(keys, tmp_path / "keys")
    data = tmp_path / "data"
    runtime = ReplicaRuntime(load_config(str(config), [f"replica.data_dir={data}"]), 1)
    runtime.store.commit()
    runtime.store.close()
    good = run_poe(tmp_path, "ledger", "verify", "--data", str(data / "replica-1"),
                   "--config", str(config), timeout=60)
    assert good.returncode == 0 and good.stdout.startswith("ok height=0"), good.stderr
    config.write_text(config.read_text().replace('mode = "ts"', 'mode = "mac"')
                      .replace("record_count = 10000", "record_count = 500"))
    line = _one_line(run_poe(tmp_path, "ledger", "verify", "--data", str(data / "replica-1"),
                             "--config", str(config), timeout=60), "ledger verify")
    assert "protocol.mode: store ts, configuration mac" in line
    assert "data.record_count: store 10000, configuration 500" in line
    assert "repair:" not in line and "do not quarantine" in line
    assert (data / "replica-1" / "ledger.db").is_file()


# ---------------------------------------------------------------------------------------------
# against a running cluster
# ---------------------------------------------------------------------------------------------

def test_bench_exits_non_zero_when_an_outcome_is_unknown(tmp_path, keys, local_cluster):
    cluster = local_cluster(keys)
    for i in (0, 1):                                  # 2 of 4: no quorum, nothing completes
        cluster.start(i)
    for i in (0, 1):
        cluster.wait_ready(i)
    done = run_poe(tmp_path, "bench", "--config", str(keys), "--clients", "1",
                   "--outstanding", "1", "--warmup", "0", "--duration", "3",
                   "--set", "client.deadline_s=1", "--set", "client.connect_timeout_s=2",
                   "--json", str(tmp_path / "run.json"), timeout=120)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert 'ended "outcome unknown"' in done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr
    record = json.loads((tmp_path / "run.json").read_text())    # nothing lost
    assert record["results"]["outcome_unknown"] >= 1
    cluster.stop()


def _zombie_or_gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_cluster_exit_status_rule(capsys):
    """`poe cluster`'s decision after a run: 2 (CliError) when a replica failed, else 1 with
    one stderr line when any outcome is unknown, else 0; the --crash-backup victim's
    SIGKILL status is no failure."""
    from poe.cli.cluster import exit_status
    from poe.cli.main import CliError

    def record(unknown: int) -> dict:
        return {"results": {"outcome_unknown": unknown}}

    assert exit_status(record(0), [0, 0, 0, 0], None, "") == 0
    assert exit_status(record(0), [0, 0, 0, -9], 3, "") == 0
    assert exit_status(record(0), [0, None, 0, 0], None, "") == 0
    assert capsys.readouterr().err == ""
    assert exit_status(record(5), [0, 0, 0, -9], 3, "") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith('poe cluster: 5 client message(s) ended "outcome unknown"'), err
    with pytest.raises(CliError) as failed:
        exit_status(record(2), [0, 1, 0, -9], 3, " (rerun with --keep)")
    assert str(failed.value) == ('replica(s) [1] exited with an error; see their logs (rerun '
                                 'with --keep); 2 client message(s) ended "outcome unknown"')
    with pytest.raises(CliError, match=r"^replica\(s\) \[3\] exited with an error; see their "
                                       r"logs in /x$"):
        exit_status(record(0), [0, 0, 0, -9], None, " in /x")
    assert capsys.readouterr().err == ""


def test_cluster_exits_non_zero_when_an_outcome_is_unknown(tmp_path, monkeypatch, capsys):
    """A real `poe cluster` run in which two of the four replicas stop (SIGTERM, a clean
    exit) just before the load starts: no quorum, every request ends "outcome unknown", and
    the command prints its table and record, then exits 1 with one line on stderr."""
    from poe.bench import runner
    from poe.cli.main import main

    real = runner.run_bench
    stopped = []

    def without_quorum(config, settings, spec):
        for pid in spec.replica_pids[2:4]:
            os.kill(pid, signal.SIGTERM)
            stopped.append(pid)
        deadline = time.monotonic() + 60
        while not all(map(_zombie_or_gone, stopped)):
            assert time.monotonic() < deadline, "stopped replicas did not exit in 60 s"
            time.sleep(0.05)
        return real(config, settings, spec)

    monkeypatch.setattr(runner, "run_bench", without_quorum)
    target = tmp_path / "run.json"
    rc = main(["cluster", "--replicas", "4", "--mode", "mac", "--clients", "1",
               "--outstanding", "1", "--warmup", "0", "--duration", "2",
               "--set", "client.deadline_s=1", "--set", "client.connect_timeout_s=2",
               "--json", str(target)])
    out, err = capsys.readouterr()
    assert len(stopped) == 2
    assert rc == 1, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith('poe cluster: ') and 'ended "outcome unknown"' in last, err[-3000:]
    assert "error:" not in err and "Traceback" not in err
    assert "outcome unknown" in out                    # the table came first
    record = json.loads(target.read_text())
    assert record["results"]["outcome_unknown"] >= 1
    assert record["results"]["proven_requests"] == 0
    assert [r["exit_status"] for r in record["replicas"]] == [0, 0, 0, 0]
    # a replica whose memory could not be read at the first sample (stopped): no drift
    rss = record["results"]["replica_rss"]
    assert rss, record["results"]
    for value in rss.values():
        value.update(first_mb=0.0, drift_percent=None)
    assert "(drift unknown)" in runner.format_table(record)


def _client(tmp_path, config, *args, lock_dir: Path, timeout=120):
    env = dict(os.environ, POE_LOCK_DIR=str(lock_dir))
    return subprocess.run(poe_argv("client", "--config", str(config), *args), cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout, env=env, check=False)


def test_clients_never_share_an_id_and_a_stale_write_is_not_reported_done(
        tmp_path, local_cluster, monkeypatch):
    config = keygen(tmp_path, clients=8)
    cluster = local_cluster(config)
    cluster.start_all()
    here, elsewhere = tmp_path / "locks-here", tmp_path / "locks-other-host"
    cluster_id = load_cluster(config.parent / "cluster.toml").cluster_id

    # another process holds the default (last) client id: `poe client` takes the next free
    monkeypatch.setenv("POE_LOCK_DIR", str(here))
    with ClientLease(cluster_id, [7]):
        done = _client(tmp_path, config, "put", "1", "a", lock_dir=here)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("put 1: OK") and " of client 6 " in done.stdout
        line = _one_line(_client(tmp_path, config, "--client-id", "7", "get", "1",
                                 lock_dir=here), "client")
        assert f"client id 7 is in use by another process on this host (pid {os.getpid()})" \
            in line

    # two `poe client put` at once with the default client id: both executed, both proven
    procs = [subprocess.Popen(poe_argv("client", "--config", str(config), "put", "2", value),
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=dict(os.environ, POE_LOCK_DIR=str(here)))
             for value in ("first", "second")]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and out.startswith("put 2: OK"), (out, err)

    # the same client id used on "another host" (another lease directory) with request ids
    # far ahead: this host's write is answered STALE, and reported as NOT executed
    settings = load_config(str(config), [])
    monkeypatch.setenv("POE_LOCK_DIR", str(elsewhere))
    other = ClientProcess(settings, 5, 5)
    try:
        assert other.wait_connected(4, 60.0) == 4
        other.clients[0].next_t += 10_000_000               # ten seconds ahead
        other.submit(0, [(3, codec.OP_UPDATE, b"from-the-other-host")])
        deadline = time.monotonic() + 60
        decided = []
        while not decided and time.monotonic() < deadline:
            decided = other.turn(0.05)
        assert decided and type(decided[0][1]) is Completed
    finally:
        other.close()
    done = _client(tmp_path, config, "--client-id", "5", "put", "3", "lost?", lock_dir=here)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout.startswith("put 3: STALE: NOT executed"), done.stdout
    read = _client(tmp_path, config, "get", "3", lock_dir=here)
    assert read.returncode == 0 and "'from-the-other-host'" in read.stdout, read.stdout

    # a view change (the primary of view 0 killed) shows in the backups' INFO log
    cluster.kill9(0)
    done = _client(tmp_path, config, "--set", "client.connect_timeout_s=2", "put", "4", "v1",
                   lock_dir=here)
    assert done.returncode == 0 and "in view 1" in done.stdout, (done.stdout, done.stderr)
    for i in (1, 2, 3):
        events = [json.loads(line) for line in cluster.log(i).read_text().splitlines()
                  if '"view-change' in line]
        assert any(e["event"] == "view-change-started" and e["level"] == "info"
                   for e in events), events
        installed = [e for e in events if e["event"] == "view-change"]
        assert installed and installed[0]["level"] == "info", events
        assert installed[0]["from_view"] == 0 and installed[0]["to_view"] == 1
        assert installed[0]["primary"] == 1
    cluster.stop()


def test_swarm_shows_progress_on_stderr(tmp_path):
    done = run_poe(tmp_path, "sim", "--swarm", "--seeds", "2", "--progress-every", "1",
                   timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("poe sim --swarm:")]
    assert [line.split(",")[0] for line in lines] == ["poe sim --swarm: 1/2 seeds",
                                                      "poe sim --swarm: 2/2 seeds"]
    assert "0 failing" in lines[-1] and "s left" in lines[-1]
