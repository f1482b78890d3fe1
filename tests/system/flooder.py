"""A keyless flooder for the system tests (issue 14: one faulty party cannot stall the cluster).

Run as a process of its own::

    python tests/system/flooder.py --peer HOST:PORT,... --client HOST:PORT,... \\
        --frames 100000 --mode ts --out counts.json

It holds no key, only the replicas' addresses (replica i's peer port and client port, in
order). It builds a pool of forged frames per replica: CERTIFY naming the primary of view 0
with a garbage certificate (no auth, and a random "MAC"), CHECKPOINT with a garbage
signature (both auths), PROPOSE in the primary's name, SUPPORT with a garbage share, frames
naming the receiver itself or a replica that does not exist, REQUESTs carrying a
well-formed client message with a garbage signature (what a backup forwards, unauthenticated
on the peer port; a client's own message on the client port: the replica checks an Ed25519
signature), and garbage: random bytes (never a control message's leading zero), truncated
frames, a zeroed header, a header with a bad version. Then it sends exactly
``--frames`` of them, as fast as ZeroMQ takes them (blocking sends: nothing is dropped on
our side, the replicas' queues push back), spread evenly over the replicas and, per replica,
over DEALERs connected to its peer port under the identities of every other replica
(ZMQ_ROUTER_HANDOVER takes the identity over) and of its own, and to its client port.
Well-formed envelopes go out partly one per message, partly coalesced 32 per message as a
replica would send them; garbage always alone (a coalesced message ends at garbage). The
first message on every connection is a single frame. Then ``--hellos`` forged HELLOs (zero
MAC tags) to every client port, on a connection of their own. ``--seconds`` keeps it
going, the same frames again, until that much time has passed (an open-ended flood).

It writes what it sent (frames and messages per replica, per connection and per kind;
start and end wall clock times) to ``--out`` as JSON. Nothing here is timing-sensitive; the test bounds the process.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import struct
import sys
import time
from collections import Counter

import zmq

from poe._core import codec
from poe.transport.zmq import HELLO

COALESCE = 32
POOL = 512                      # distinct frames of each kind per replica
SEND_TIMEOUT_MS = 30_000


def _rand(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def _fake_mac(frame: bytes, rng: random.Random) -> bytes:
    return codec.seal(frame, _rand(rng, 32))


def _client_message(rng: random.Random) -> bytes:
    ops = [(rng.randrange(1 << 40), rng.randrange(10_000), codec.OP_UPDATE, _rand(rng, 100))]
    return codec.pack_client_message(rng.randrange(8), ops) + _rand(rng, 64)


def forged_pool(target: int, n: int, mode: str, rng: random.Random, *, window: int = 128,
                period: int = 64) -> dict[str, list[bytes]]:
    """Forged frames for replica ``target`` of an n-replica cluster, by kind. Kinds ending
    in ``-garbage`` are not well-formed envelopes (sent alone)."""
    others = [j for j in range(n) if j != target]
    bitmap = bytes([(1 << n) - 1 & 0xFF]) + bytes(max(0, (n + 7) // 8 - 1))
    share = 96 if mode == "ts" else 0
    pool: dict[str, list[bytes]] = {k: [] for k in (
        "certify-noauth", "certify-fakemac", "checkpoint-noauth", "checkpoint-fakemac",
        "propose-fakemac", "propose-noauth", "support-fakemac", "self-sender-fakemac",
        "unknown-sender-fakemac", "request-badsig", "random-garbage", "truncated-garbage", "zero-header-garbage",
        "bad-version-garbage")}
    for i in range(POOL):
        k = 1 + i % window
        digest = _rand(rng, 32)
        certify = codec.encode_certify(0, 0, k, digest, bitmap, _rand(rng, 96))
        pool["certify-noauth"].append(certify)
        pool["certify-fakemac"].append(_fake_mac(codec.encode_certify(
            0, 0, k, digest, bitmap, _rand(rng, 96), codec.AUTH_MAC), rng))
        sender = others[i % len(others)]
        seq = period * (1 + i % 4)
        pool["checkpoint-noauth"].append(codec.encode_checkpoint(
            sender, seq, _rand(rng, 32), _rand(rng, 32), _rand(rng, 64)))
        pool["checkpoint-fakemac"].append(_fake_mac(codec.encode_checkpoint(
            sender, seq, _rand(rng, 32), _rand(rng, 32), _rand(rng, 64), codec.AUTH_MAC), rng))
        batch = [_client_message(rng) for _ in range(1 + i % 3)]
        pool["propose-fakemac"].append(_fake_mac(codec.encode_propose(0, 0, k, batch), rng))
        pool["propose-noauth"].append(codec.encode_propose(0, 0, k, batch, codec.AUTH_NONE))
        pool["support-fakemac"].append(_fake_mac(codec.encode_support(
            sender, 0, k, digest, _rand(rng, share)), rng))
        pool["self-sender-fakemac"].append(_fake_mac(codec.encode_support(
            target, 0, k, digest, _rand(rng, share)), rng))
        pool["unknown-sender-fakemac"].append(_fake_mac(codec.encode_support(
            n + i % 5, 0, k, digest, _rand(rng, share)), rng))
        pool["request-badsig"].append(codec.encode_request(_client_message(rng)))
        garbage = _rand(rng, 1 + i % 200)
        pool["random-garbage"].append(garbage if garbage[:1] != b"\0" else b"\1" + garbage[1:])
        cut = rng.randrange(1, len(certify))
        pool["truncated-garbage"].append(certify[:cut])
        pool["zero-header-garbage"].append(b"PE" + bytes(30 + i % 40))
        pool["bad-version-garbage"].append(certify[:2] + bytes([2 + i % 200]) + certify[3:])
    return pool


def plan(pool: dict[str, list[bytes]], frames: int) -> list[tuple[str, list[bytes]]]:
    """``frames`` frames of ``pool`` as messages: (kind, frames of that message)."""
    kinds = sorted(pool)
    out: list[tuple[str, list[bytes]]] = []
    left = frames
    i = 0
    while left > 0:
        kind = kinds[i % len(kinds)]
        items = pool[kind]
        if kind.endswith("-garbage") or (i // len(kinds)) % 2 == 0:
            take = 1
        else:
            take = min(COALESCE, left)
        out.append((kind, [items[(i + j) % len(items)] for j in range(take)]))
        left -= take
        i += 1
    return out


def forged_hello(i: int) -> bytes:
    """A HELLO routing client ``i % 8`` to us, with the highest counter and a zero tag."""
    return HELLO + struct.pack("<QH", 2 ** 64 - 1 - i, 1) + struct.pack("<I", i % 8) \
        + bytes(32)


def _endpoint(address: str) -> str:
    return f"tcp://{address}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peer", required=True, help="replica i's peer port host:port, comma list")
    p.add_argument("--client", required=True, help="replica i's client port, comma list")
    p.add_argument("--frames", type=int, default=100_000)
    p.add_argument("--seconds", type=float, default=0.0,
                   help="keep flooding (the same frames again) until this long has passed")
    p.add_argument("--spread", type=float, default=0.0,
                   help="pace one round of the frames evenly over this many seconds (0: as "
                        "fast as ZeroMQ takes them)")
    p.add_argument("--mode", choices=("ts", "mac"), default="ts")
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--hellos", type=int, default=100,
                   help="forged HELLOs sent to each replica's client port after the frames")
    p.add_argument("--out", required=True)
    p.add_argument("--own-identity-only", action="store_true",
                   help="connect to the peer ports under our own identity only (no replica's)")
    args = p.parse_args(argv)
    peers = args.peer.split(",")
    clients = args.client.split(",")
    n = len(peers)
    rng = random.Random(args.seed)
    ctx = zmq.Context()
    me = b"flooder-%d" % os.getpid()
    sockets: list[list[tuple[str, zmq.Socket]]] = []
    for target in range(n):
        row = []
        names = [me] if args.own_identity_only else \
            [b"r%d" % j for j in range(n) if j != target] + [me]
        for name in names:
            row.append(("peer:" + name.decode(), _dealer(ctx, name, _endpoint(peers[target]))))
        row.append(("client:" + me.decode(), _dealer(ctx, me, _endpoint(clients[target]))))
        sockets.append(row)
    hello_sockets = [_dealer(ctx, me + b"-hello", _endpoint(clients[t])) for t in range(n)]
    share, extra = divmod(args.frames, n)
    plans = [plan(forged_pool(t, n, args.mode, rng), share + (t < extra)) for t in range(n)]
    sent = {"frames": 0, "messages": 0, "failed_frames": 0,
            "per_replica": [0] * n, "per_socket": [{} for _ in range(n)],
            "messages_per_replica": [0] * n, "messages_per_socket": [{} for _ in range(n)],
            "first_message_frames": [{} for _ in range(n)],
            "per_kind": {}, "per_replica_kind": [{} for _ in range(n)], "hellos": [0] * n}
    # the whole schedule is built before the first send: the flood's own CPU (on the
    # machine the replicas share in a test) is then ZeroMQ's sends, not our bookkeeping
    schedule: list[tuple[int, str, str, zmq.Socket, bytes, int]] = []
    cursors = [0] * n
    turn = 0
    while any(cursors[t] < len(plans[t]) for t in range(n)):
        for t in range(n):
            if cursors[t] >= len(plans[t]):
                continue
            kind, frames = plans[t][cursors[t]]
            name, sock = sockets[t][turn % len(sockets[t])]
            cursors[t] += 1
            message = frames[0] if len(frames) == 1 else b"".join(frames)
            schedule.append((t, kind, name, sock, message, len(frames)))
        turn += 1
    time.sleep(0.2)                              # let the connections complete
    sent["start"] = time.time()
    until = sent["start"] + args.seconds
    failed: Counter[int] = Counter()
    rounds = 0
    while True:
        rounds += 1
        began, total = time.time(), len(schedule)
        for index, entry in enumerate(schedule):
            if args.spread and index % 32 == 0:
                wait = began + args.spread * index / total - time.time()
                if wait > 0:
                    time.sleep(wait)
            try:
                entry[3].send(entry[4])
            except zmq.Again:
                failed[index] += 1
        if time.time() >= until:
            break                                # else again, until the time is up
    sent["end"] = time.time()
    sent["rounds"] = rounds
    for index, (t, kind, name, _, _, count) in enumerate(schedule):
        sent["first_message_frames"][t].setdefault(name, count)
        times = rounds - failed[index]
        sent["failed_frames"] += (rounds - times) * count
        if not times:
            continue
        sent["frames"] += times * count
        sent["messages"] += times
        sent["per_replica"][t] += times * count
        sent["per_socket"][t][name] = sent["per_socket"][t].get(name, 0) + times * count
        sent["messages_per_replica"][t] += times
        per = sent["messages_per_socket"][t]
        per[name] = per.get(name, 0) + times
        sent["per_kind"][kind] = sent["per_kind"].get(kind, 0) + times * count
        mine = sent["per_replica_kind"][t]
        mine[kind] = mine.get(kind, 0) + times * count
    # forged HELLOs on the client port, a connection of their own: control messages, not
    # frames (counted apart)
    for t in range(n):
        sock = hello_sockets[t]
        for i in range(args.hellos):
            sock.send(forged_hello(i))
            sent["hellos"][t] += 1
    # LINGER: what is queued still leaves before the sockets close
    for sock in [s for row in sockets for _, s in row] + hello_sockets:
        sock.close(linger=10_000)
    ctx.term()
    sent["closed"] = time.time()
    with open(args.out, "w") as handle:
        json.dump(sent, handle)
    return 0


def _dealer(ctx: zmq.Context, identity: bytes, endpoint: str) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, identity)
    sock.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
    sock.setsockopt(zmq.SNDHWM, 1000)
    sock.connect(endpoint)
    return sock


if __name__ == "__main__":
    sys.exit(main())
