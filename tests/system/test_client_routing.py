"""Client routing against real replica processes on 127.0.0.1 (issue 14, class 5).

A replica routes a client's INFORMs to the connection of that client's last HELLO that
carries a valid MAC with the client's key (poe/transport/zmq.py). Here: a peer holding no key
connects with the real client's connection identity (the takeover ROUTER_HANDOVER allowed)
and with the old-style names, sends old and forged HELLOs, and the real client keeps being
served; and ``poe client`` right after ``poe bench`` (whose worker announced the same client
id on a connection that is gone) gets its proof.

Bounded: every wait has a deadline, every process and socket is closed at the end.
"""
from __future__ import annotations

import time
from pathlib import Path

import zmq
from syshelpers import keygen, run_poe

from poe._core import codec
from poe.config import load_config
from poe.crypto.keyfile import load_cluster
from poe.protocol.poe.client import Completed
from poe.runtime.client import ClientProcess
from poe.transport.zmq import HELLO

CLIENT = 7                                    # the last of 8: `poe client`'s default id


def _client_endpoints(config: Path) -> list[str]:
    cluster = load_cluster(config.parent / "cluster.toml")
    return [f"tcp://{r.host}:{r.client_port}" for r in cluster.replicas]


def _decide(proc: ClientProcess, key: int, value: bytes, timeout_s: float = 40.0):
    """Submit one UPDATE and run the loop until it is decided (or fail at the deadline)."""
    proc.submit(0, [(key, codec.OP_UPDATE, value)])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for _, event in proc.turn(0.05):
            return event
    raise AssertionError(f"no decision in {timeout_s} s")


def _spin(proc: ClientProcess, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        proc.turn(0.05)


def test_an_identity_takeover_does_not_cut_off_the_real_client(tmp_path, local_cluster,
                                                                monkeypatch):
    config = keygen(tmp_path, clients=8, mode="mac")
    cluster = local_cluster(config)
    cluster.start_all()
    settings = load_config(str(config), ["client.deadline_s=40"])
    real = ClientProcess(settings, CLIENT, CLIENT)
    ctx = zmq.Context()
    thieves: list[zmq.Socket] = []
    try:
        assert real.wait_connected(4, 60.0) == 4
        assert type(_decide(real, 1, b"before")) is Completed
        # a peer holding no key: on every replica, the real client's live connection name
        # (ROUTER_HANDOVER used to give it the route), the old per-process names, forged
        # HELLOs for the real client (highest counter, zero tag) and the old HELLO
        forged = (HELLO + (2**64 - 1).to_bytes(8, "little") + (1).to_bytes(2, "little")
                  + CLIENT.to_bytes(4, "little") + bytes(32))
        for r, endpoint in enumerate(_client_endpoints(config)):
            for identity in (real.transport.identities[r], b"c7", b"c0-7", b"c7.x"):
                sock = ctx.socket(zmq.DEALER)
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.IDENTITY, identity)
                sock.connect(endpoint)
                thieves.append(sock)
        time.sleep(0.5)                              # the thieves' connections complete
        for sock in thieves:
            for message in (b"\x00hello", forged):
                try:
                    sock.send(message, zmq.NOBLOCK)
                except zmq.Again:
                    pass
        _spin(real, 1.0)
        for i in range(3):
            event = _decide(real, 2 + i, b"during")
            assert type(event) is Completed, event
        # nothing reached the thieves (no INFORM was routed to them)
        for sock in thieves:
            assert sock.poll(0) == 0
        # another process of the same client (a restart): gets its route with its HELLO;
        # on one host the client-id lease (poe/runtime/lease.py) refuses a second process
        # of the same client, so it plays one on another host (its own lease directory)
        monkeypatch.setenv("POE_LOCK_DIR", str(tmp_path / "locks-other-host"))
        other = run_poe(tmp_path, "client", "--config", str(config), "--client-id",
                        str(CLIENT), "put", "9", "elsewhere", timeout=120)
        assert other.returncode == 0, other.stdout + other.stderr
        assert other.stdout.startswith("put 9: OK")
        # and the first process gets it back by its next HELLO (a heartbeat later) or retry
        assert type(_decide(real, 5, b"after")) is Completed
    finally:
        for sock in thieves:
            sock.close(0)
        real.close()
        ctx.term()
    records = cluster.stop()
    for i, record in records.items():
        assert record["status"] == 0
        transport = record["exit"]["transport"]
        assert transport.get("dropped-hello-unauthenticated", 0) >= 1, (i, transport)
        assert transport.get("dropped-hello-bad-mac", 0) >= 1, (i, transport)


def test_poe_client_right_after_poe_bench_gets_its_proof(tmp_path, local_cluster):
    config = keygen(tmp_path, clients=8, mode="ts")
    cluster = local_cluster(config)
    cluster.start_all()
    limits = ("--set", "client.deadline_s=20")
    first = run_poe(tmp_path, "client", "--config", str(config), *limits, "put", "7", "one",
                    timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    # the bench's worker serves clients 0..7: client 7's route moves to its connection
    bench = run_poe(tmp_path, "bench", "--config", str(config), "--clients", "8",
                    "--warmup", "0.5", "--duration", "1.5", "--outstanding", "1",
                    timeout=180)
    assert bench.returncode == 0, bench.stderr[-3000:]
    put = run_poe(tmp_path, "client", "--config", str(config), *limits, "put", "7", "two",
                  timeout=120)
    assert put.returncode == 0, put.stdout + put.stderr
    assert put.stdout.startswith("put 7: OK")
    get = run_poe(tmp_path, "client", "--config", str(config), *limits, "get", "7",
                  timeout=120)
    assert get.returncode == 0, get.stdout + get.stderr
    assert "get 7: OK 'two' (3 bytes)" in get.stdout
    records = cluster.stop()
    assert all(r["status"] == 0 for r in records.values())
