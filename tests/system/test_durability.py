"""Durability system tests (issue #7): real replica processes with a store, killed with
SIGKILL under load, restarted, and their data directories checked with ``poe ledger verify``.

Every wait is bounded and only turns a hang into a failure; assertions are on outcomes
(proofs, ledgers, exit statuses, state digests), never on timing.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from poe._core.codec import Batch
from syshelpers import keygen, poe_argv, run_poe

from poe.config import load_config
from poe.storage.store import Store, StoreError

CONVERGE_TIMEOUT_S = 90.0
SETTINGS = ("replica.data_dir=data", "protocol.checkpoint_period=16", "protocol.window=64")


def _data(config: Path, i: int) -> Path:
    return load_config(config, list(SETTINGS)).data_dir(i)


def _start_load(tmp_path: Path, config: Path, seconds: int) -> subprocess.Popen:
    return subprocess.Popen(
        poe_argv("bench", "--config", str(config), "--warmup", "1", "--duration", str(seconds),
                 "--clients", "4", "--outstanding", "2", "--json", str(tmp_path / "b.json"),
                 # the load's keys stay below LOAD_KEYS: KEY_BEFORE/KEY_AFTER are the tests'
                 "--set", f"data.record_count={LOAD_KEYS}"),
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)


def _finish(bench: subprocess.Popen) -> str:
    try:
        _, err = bench.communicate(timeout=240)
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.wait(30)
    assert bench.returncode == 0, err[-3000:]
    return err


def _put(tmp_path: Path, config: Path, key: int, value: str) -> None:
    done = run_poe(tmp_path, "client", "--config", str(config), "put", str(key), value,
                   timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def _get(tmp_path: Path, config: Path, key: int) -> str:
    done = run_poe(tmp_path, "client", "--config", str(config), "get", str(key), timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    return done.stdout


def _blocks(config: Path, i: int) -> dict[int, tuple[bytes, bytes | None]]:
    store = Store(_data(config, i), genesis=load_config(config).genesis(), replica_id=-1,
                  readonly=True)
    try:
        return {b.seq: (b.hash, b.body) for b in store.blocks()}
    finally:
        store.db.close()


def _head(config: Path, i: int):
    try:
        blocks = _blocks(config, i)
    except (StoreError, sqlite3.Error):
        return None
    return max(blocks) if blocks else 0


def _wait_converged(config: Path, ids=(0, 1, 2, 3)) -> None:
    """Until the ledgers of replicas ``ids`` have the same height (bounded)."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while True:
        heads = [_head(config, i) for i in ids]
        if heads[0] and len(set(heads)) == 1:
            return
        assert time.monotonic() < deadline, f"ledgers did not converge: heights {heads}"
        time.sleep(0.5)


def _verify_all(tmp_path: Path, config: Path, n: int = 4) -> list[str]:
    outs = []
    for i in range(n):
        done = run_poe(tmp_path, "ledger", "verify", "--data", str(_data(config, i)),
                       "--config", str(config), timeout=180)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("ok height=")
        outs.append(done.stdout)
    return outs


def _assert_same_ledgers(config: Path, n: int = 4) -> None:
    ledgers = [_blocks(config, i) for i in range(n)]
    for i in range(1, n):
        assert ledgers[i], f"replica {i} has no block"
        common = set(ledgers[0]) & set(ledgers[i])
        assert common, f"replica {i} shares no block with replica 0"
        for seq in common:
            assert ledgers[i][seq][0] == ledgers[0][seq][0], f"block {seq} of replica {i}"


def _holds_put(config: Path, i: int, key: int, value: str) -> bool:
    for _, body in _blocks(config, i).values():
        if body is None:
            continue
        batch = Batch.from_body(body)
        for m in range(len(batch)):
            for _, k, _, v in batch.ops(m):
                if k == key and v == value.encode():
                    return True
    return False


@pytest.fixture
def durable(tmp_path, local_cluster):
    config = keygen(tmp_path, mode="ts")
    return config, local_cluster(config, settings=SETTINGS)


def _stop_and_compare_state(cluster) -> None:
    records = cluster.stop()
    assert [records[i]["status"] for i in range(4)] == [0, 0, 0, 0]
    exits = [records[i]["exit"] for i in range(4)]
    assert len({(e["executed"], e["state_digest"], e["head"]) for e in exits}) == 1, exits


def test_kill_9_of_a_backup_under_load_then_it_catches_up(tmp_path, durable):
    config, cluster = durable
    cluster.start_all()
    bench = _start_load(tmp_path, config, 8)
    time.sleep(3.0)
    cluster.kill9(3)
    killed_at = _head(config, 3)
    cluster.start(3)
    cluster.wait_ready(3)
    _finish(bench)
    _wait_converged(config)
    assert _head(config, 3) > killed_at          # it executed (or transferred) past the kill
    _assert_same_ledgers(config)
    _stop_and_compare_state(cluster)
    _verify_all(tmp_path, config)


# keys the bench's YCSB load never touches (_start_load keeps it below LOAD_KEYS of the
# 10,000 loaded records): the load, not a lost write, must never be what overwrites them
LOAD_KEYS = 9_900
KEY_BEFORE, KEY_AFTER = 9_911, 9_912


def test_kill_9_of_the_primary_under_load_keeps_every_proven_request(tmp_path, durable):
    config, cluster = durable
    cluster.start_all()
    bench = _start_load(tmp_path, config, 10)
    _put(tmp_path, config, KEY_BEFORE, "before-the-kill")
    cluster.kill9(0)                              # the primary of view 0
    _put(tmp_path, config, KEY_AFTER, "after-the-kill")  # needs a view change to be proven
    _finish(bench)
    assert "before-the-kill" in _get(tmp_path, config, KEY_BEFORE)
    _wait_converged(config, (1, 2, 3))
    for i in (1, 2, 3):
        assert _holds_put(config, i, KEY_BEFORE, "before-the-kill"), f"replica {i}"
        assert _holds_put(config, i, KEY_AFTER, "after-the-kill"), f"replica {i}"
    # the old primary comes back on its own store (see docs/storage.md for what it can
    # execute before it learns the new view)
    cluster.start(0)
    cluster.wait_ready(0)
    _assert_same_ledgers(config)
    records = cluster.stop()
    assert all(records[i]["status"] == 0 for i in range(4))
    assert all(records[i]["exit"]["stats"].get("views-installed", 0) >= 1 for i in (1, 2, 3))
    _verify_all(tmp_path, config)


@pytest.mark.parametrize("mode", ["ts", "mac", "pbft"])
def test_kill_9_of_every_replica_under_load_loses_no_proven_request(tmp_path, local_cluster,
                                                                   mode):
    # TS: the blocks above the stable checkpoint come back with their certificates; MAC:
    # as view-committed slots of the current view (docs/storage.md, "Recovery"); PBFT (MAC
    # fabric): the same slots, prepared, whose COMMITs are sent again after the restart
    config = keygen(tmp_path, mode="mac" if mode == "pbft" else mode,
                    protocol="pbft" if mode == "pbft" else "poe")
    cluster = local_cluster(config, settings=SETTINGS)
    cluster.start_all()
    bench = _start_load(tmp_path, config, 30)
    time.sleep(2.0)
    _put(tmp_path, config, 21, "proven-before-the-crash")
    for i in range(4):
        cluster.kill9(i)
    _verify_all(tmp_path, config)                 # every store is good right after SIGKILL
    # proven = nf replicas executed it: at least nf stores hold it through the crash
    assert sum(_holds_put(config, i, 21, "proven-before-the-crash") for i in range(4)) >= 3
    bench.send_signal(signal.SIGTERM)
    bench.wait(60)
    for i in range(4):
        cluster.start(i)
    for i in range(4):
        cluster.wait_ready(i)
    assert "proven-before-the-crash" in _get(tmp_path, config, 21)
    _put(tmp_path, config, 22, "after-the-restart")
    # load again: a replica that restarted below a checkpoint its peers had made stable
    # before the crash catches up at the next stable checkpoint (docs/storage.md)
    _finish(_start_load(tmp_path, config, 3))
    _wait_converged(config)
    for i in range(4):
        assert _holds_put(config, i, 21, "proven-before-the-crash"), f"replica {i}"
    _assert_same_ledgers(config)
    _stop_and_compare_state(cluster)
    _verify_all(tmp_path, config)


def _flip_a_block_digest(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    digest = db.execute("SELECT digest FROM blocks ORDER BY seq LIMIT 1 OFFSET 2").fetchone()[0]
    db.close()
    data = bytearray(path.read_bytes())
    at = data.find(digest)
    assert at >= 0
    data[at + 5] ^= 0x10
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)


@pytest.mark.parametrize("damage", [_flip_a_block_digest, _truncate])
def test_a_damaged_ledger_stops_that_replica_while_the_others_serve(tmp_path, durable, damage):
    config, cluster = durable
    cluster.start_all()
    bench = _start_load(tmp_path, config, 3)
    _finish(bench)
    cluster.kill9(2)
    db = _data(config, 2) / "ledger.db"
    damage(db)
    verify = run_poe(tmp_path, "ledger", "verify", "--data", str(db.parent), "--config",
                     str(config), timeout=120)
    assert verify.returncode == 1
    assert "FAILED" in verify.stderr and "state transfer" in verify.stderr
    done = run_poe(tmp_path, "replica", "--config", str(config), "--id", "2",
                   *[a for s in SETTINGS for a in ("--set", s)], timeout=120)
    assert done.returncode == 2
    line = done.stderr.strip().splitlines()[-1]
    assert str(db) in line and "poe ledger quarantine" in line and "state transfer" in line
    _put(tmp_path, config, 31, "served-by-the-others")
    # the repair: quarantine the database (votes.hwm kept) and restart; it abstains until a
    # state transfer carries it past what it voted on, and rejoins
    assert run_poe(tmp_path, "ledger", "quarantine", "--data", str(db.parent),
                   timeout=60).returncode == 0
    cluster.start(2)
    cluster.wait_ready(2)
    bench = _start_load(tmp_path, config, 4)
    _finish(bench)
    _wait_converged(config)
    _assert_same_ledgers(config)
    cluster.stop()
    _verify_all(tmp_path, config)


def test_every_replica_serves_prometheus_metrics(tmp_path, local_cluster):
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    from poe.runtime.procs import free_port_range

    config = keygen(tmp_path, mode="ts")
    port = free_port_range(4)
    cluster = local_cluster(config, settings=SETTINGS + (f"replica.metrics_port={port}",))
    cluster.start_all()
    _put(tmp_path, config, 41, "counted")

    def scrape() -> list[str]:
        texts = []
        for i in range(4):
            with urlopen(f"http://127.0.0.1:{port + i}/metrics", timeout=30) as reply:
                texts.append(reply.read().decode())
        return texts

    def value(text: str, name: str, **labels) -> float:
        want = {k: str(v) for k, v in labels.items()}
        return next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                    if s.name == name and s.labels == want)

    deadline = time.monotonic() + 30
    while True:                         # every connection between the four reported up
        texts = scrape()
        up = [value(text, "poe_peer_up", replica=i, peer=p)
              for i, text in enumerate(texts) for p in range(4) if p != i]
        if all(up) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert up == [1.0] * 12
    executed = []
    for i, text in enumerate(texts):
        assert value(text, "poe_view", replica=i) == 0.0
        assert "poe_loop_turn_seconds_bucket" in text and "poe_store_commit_seconds_count" in text
        for family in text_string_to_metric_families(text):     # process_* included
            assert all(s.labels.get("replica") == str(i) for s in family.samples), family.name
        assert value(text, "process_resident_memory_bytes", replica=i) > 1e6
        executed.append(value(text, "poe_requests_executed_total", replica=i))
        if executed[-1] >= 1:           # it executed the put's batch: one latency observed
            assert value(text, "poe_batch_latency_seconds_count", replica=i) >= 1
    assert sum(e >= 1 for e in executed) >= 3      # the put was proven: nf replicas executed it
    assert all(r["status"] == 0 for r in cluster.stop().values())
