"""Byzantine replicas and Byzantine clients for the simulator (issue #5).

What it is for: attacking the real protocol objects from inside the cluster. A Byzantine
replica WRAPS an honest ``PoEReplica`` and has its interface (``on_message``,
``on_timeout`` and, by delegation, every attribute the simulator and checkers read), so it
can stand in ``SimCluster.replicas``; it misbehaves only in what it lets in and what it
sends: equivocation, withholding, hidden certificates, corrupt shares / certificates /
MACs, replays, garbled bytes, wrong INFORM results, forged or stale view-change messages,
small field mutations, and Twins (two copies of one replica, each talking to a part of the
cluster). Byzantine clients sign conflicting payloads for one request id or flood the
replicas. ``install`` marks a replica Byzantine in the checker, so only correct replicas
are checked. ``stop()`` ends the misbehaviour (the liveness phase of a run).

Every mutator works on raw frames of any kind, so the view change's messages (VC-REQUEST,
NV-PROPOSE, STATE-*) are attacked by the same code the day they appear.

What it must never do: use another party's keys (a Byzantine replica signs and MACs only
with its own suite, a Byzantine client only with its own), reach into the wrapped replica's
state to change it, read the wall clock, or use randomness other than its seeded generator.
"""
from __future__ import annotations

import random
from collections import Counter, deque

from poe._core import codec
from poe._core.codec import Batch, WireError
from poe.crypto.base import bitmap_from_ids, client as client_party
from poe.crypto.base import replica as replica_party
from poe.crypto.statements import (
    checkpoint_statement, request_statement, support_statement, vc_request_statement,
)
from poe.protocol.actions import Broadcast, CancelTimer, Reply, Send, SetTimer

AUTH_LEN = (0, codec.MAC_SIZE, codec.SIG_SIZE, 0)
TIMER = "adversary"          # the timer kind of a wrapper's own schedule


# ---------------------------------------------------------------------------------- frames

def frame_kind(frame: bytes) -> int:
    return frame[3] if len(frame) > 3 else 0


def frame_auth(frame: bytes) -> int:
    return frame[4] & 3 if len(frame) > 4 else 0


def unsealed(frame: bytes) -> bytes:
    """The frame without its MAC or signature (what that auth field covers)."""
    return bytes(frame[:len(frame) - AUTH_LEN[frame_auth(frame)]])


def with_header(frame: bytes, *, sender: int | None = None, view: int | None = None,
                seq: int | None = None) -> bytes:
    """An unsealed frame with header fields replaced (body and flags kept)."""
    b = bytearray(frame)
    if sender is not None:
        b[8:12] = sender.to_bytes(4, "little")
    if view is not None:
        b[16:24] = view.to_bytes(8, "little")
    if seq is not None:
        b[24:32] = seq.to_bytes(8, "little")
    return bytes(b)


def flip_bits(frame: bytes, rng: random.Random, flips: int) -> bytes:
    b = bytearray(frame)
    for _ in range(flips):
        i = rng.randrange(len(b) * 8)
        b[i >> 3] ^= 1 << (i & 7)
    return bytes(b)


def flip_byte(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    b = bytearray(data)
    b[rng.randrange(len(b))] ^= 1 + rng.randrange(255)
    return bytes(b)


class _Reservoir:
    """A uniform sample of everything offered so far (old frames stay as likely as new)."""

    __slots__ = ("size", "items", "seen", "rng")

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size, self.items, self.seen, self.rng = size, [], 0, rng

    def offer(self, item) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
        else:
            i = self.rng.randrange(self.seen)
            if i < self.size:
                self.items[i] = item


# ---------------------------------------------------------------------------------- replicas

class ByzantineReplica:
    """An honest replica with hostile input and output filters; subclasses override
    ``receive`` (return the frame to let in, or None), ``send`` (one outgoing frame to node
    ``dst`` -> list of (node, frame); nodes >= n are clients) and ``act`` (own schedule every
    ``interval`` seconds). Counters of what it did are in ``counters``."""

    kind = "byzantine"
    interval = 0.0

    def __init__(self, inner, seed: int = 0) -> None:
        self.inner = inner
        self.rng = random.Random(seed)
        self.active = True
        self.counters: Counter[str] = Counter()
        self.n = inner.n
        self.id = inner.id
        self.suite = inner.crypto
        self._armed = False

    def __getattr__(self, name):
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    def stop(self) -> None:
        """Behave from now on (the wrapped replica is honest)."""
        self.active = False

    # ---------------------------------------------------------------- interface

    def on_message(self, data: bytes, now: float) -> list:
        if self.active:
            try:
                data = self.receive(data, now)
            except WireError:
                # an adversary's own look at a garbled frame (another faulty replica's)
                # must not stop the simulation: the frame goes to the replica as it is
                # (swarm seeds 675, 756: fetch-flood peeking at a garbled PROPOSE)
                self.counters["receive-malformed"] += 1
            if data is None:
                self.counters["ignored"] += 1
                return []
        return self._out(self.inner.on_message(data, now), now)

    def on_timeout(self, kind: str, key: int, now: float) -> list:
        if kind == TIMER:
            self._armed = False
            if not self.active and not self.acts_when_stopped:
                return []
            out = self.act(now)
            if self.interval and self.rearm():
                self._armed = True
                out.append(SetTimer(TIMER, 0, now + self.interval))
            return out
        return self._out(self.inner.on_timeout(kind, key, now), now)

    acts_when_stopped = False       # its own schedule goes on after stop() (to clean up)

    def rearm(self) -> bool:
        return self.active

    # ---------------------------------------------------------------- hooks

    def receive(self, data: bytes, now: float) -> bytes | None:
        return data

    def send(self, dst: int, frame: bytes, now: float):
        return ((dst, frame),)

    def act(self, now: float) -> list:
        return []

    # ---------------------------------------------------------------- helpers

    def emit(self, dst: int, frame: bytes):
        return Send(dst, frame) if dst < self.n else Reply(dst - self.n, frame)

    def peer(self, dst: int):
        return replica_party(dst) if dst < self.n else client_party(dst - self.n)

    def reseal(self, frame: bytes, dst: int) -> bytes:
        """Authenticate an unsealed frame for node ``dst`` with OUR keys, as its flags say."""
        auth = frame_auth(frame)
        if auth == codec.AUTH_MAC:
            return frame + self.suite.macs.mac(self.peer(dst), frame)
        if auth == codec.AUTH_SIG:
            statement = vc_request_statement(frame) if frame_kind(frame) == codec.VC_REQUEST \
                else frame
            return frame + self.suite.signer.sign(statement)
        return frame

    def to_all(self, frame_for, out: list) -> None:
        """frame_for(dst) -> sealed frame, to every other replica."""
        for dst in range(self.n):
            if dst != self.id:
                out.append(Send(dst, frame_for(dst)))

    def _out(self, actions: list, now: float) -> list:
        if not self.active:
            return actions
        out = []
        n, me = self.n, self.id
        for a in actions:
            t = type(a)
            if t is Send:
                targets = ((a.to, a.data),)
            elif t is Reply:
                targets = ((n + a.client, a.data),)
            elif t is Broadcast:
                targets = [(dst, a.data) for dst in range(n) if dst != me]
            else:
                out.append(a)
                continue
            for dst, frame in targets:
                for d, f in self.send(dst, frame, now):
                    out.append(self.emit(d, f))
        if self.interval and not self._armed:
            self._armed = True
            out.append(SetTimer(TIMER, 0, now + self.interval))
        return out


class Equivocator(ByzantineReplica):
    """As primary: a second PROPOSE for every slot, built from other client messages it
    holds, sealed with its MAC keys, to ``victims`` (default: half of the replicas)."""

    kind = "equivocate"

    def __init__(self, inner, seed: int = 0, victims=None) -> None:
        super().__init__(inner, seed)
        others = [r for r in range(self.n) if r != self.id]
        self.victims = set(victims) if victims is not None else set(others[:self.n // 2])
        self.pool: deque[bytes] = deque(maxlen=256)
        self.alternatives: dict[tuple[int, int], bytes] = {}

    def receive(self, data, now):
        if frame_kind(data) == codec.REQUEST:
            try:
                self.pool.append(bytes(codec.decode(data).client_message))
            except WireError:
                pass
        return data

    def send(self, dst, frame, now):
        if frame_kind(frame) != codec.PROPOSE or dst not in self.victims:
            return ((dst, frame),)
        alt = self._alternative(frame)
        return ((dst, self.reseal(alt, dst)),) if alt is not None else ((dst, frame),)

    def _alternative(self, frame: bytes) -> bytes | None:
        m = codec.decode(frame)
        key = (m.view, m.seq)
        alt = self.alternatives.get(key)
        if alt is not None:
            return alt
        mine = [bytes(x) for x in m.batch.messages()]
        taken = set(mine)
        limit = self.inner.config.batch_size
        chosen, ops = [], 0
        for msg in reversed(self.pool):
            if msg in taken:
                continue
            nops = int.from_bytes(msg[4:6], "little")
            if ops + nops > limit:
                break
            chosen.append(msg)
            taken.add(msg)
            ops += nops
        if not chosen:
            chosen = mine[::-1] if len(mine) > 1 else mine * 2
        alt = codec.encode_propose(self.id, m.view, m.seq, Batch.from_messages(chosen))
        if len(self.alternatives) > 4096:
            self.alternatives.clear()
        self.alternatives[key] = alt
        self.counters["equivocated"] += 1
        return alt


class Withholder(ByzantineReplica):
    """Withholds outgoing frames: of ``kinds`` to the replicas ``silent_to`` (all kinds if
    no ``kinds`` are given; to every replica if no ``silent_to`` is given), and every INFORM
    if ``clients``; ignores the incoming ``ignore_kinds``."""

    kind = "withhold"

    def __init__(self, inner, seed: int = 0, silent_to=(), kinds=(), clients=False,
                 ignore_kinds=()) -> None:
        super().__init__(inner, seed)
        self.silent_to = set(silent_to)
        self.kinds = set(kinds)
        self.clients = clients
        self.ignore_kinds = set(ignore_kinds)

    def receive(self, data, now):
        return None if frame_kind(data) in self.ignore_kinds else data

    def send(self, dst, frame, now):
        if dst >= self.n:
            withhold = self.clients
        else:
            withhold = (not self.silent_to or dst in self.silent_to) and (
                not self.kinds or frame_kind(frame) in self.kinds) and (
                bool(self.silent_to) or bool(self.kinds))
        if withhold:
            self.counters["withheld"] += 1
            return ()
        return ((dst, frame),)


class HiddenCertifier(ByzantineReplica):
    """As primary (TS): CERTIFY goes only to ``reveal_to``; FETCH-REPLYs to anyone else lose
    their certificate; every hidden CERTIFY is revealed to all ``reveal_after`` seconds
    later (and everything still hidden when it stops)."""

    kind = "hide-certificate"
    interval = 0.05
    acts_when_stopped = True

    def __init__(self, inner, seed: int = 0, reveal_to=(), reveal_after: float = 1.0) -> None:
        super().__init__(inner, seed)
        self.reveal_to = set(reveal_to)
        self.reveal_after = reveal_after
        self.held: dict[tuple[int, int], tuple[float, bytes]] = {}

    def send(self, dst, frame, now):
        kind = frame_kind(frame)
        if dst >= self.n or dst in self.reveal_to:
            return ((dst, frame),)
        if kind == codec.CERTIFY:
            _, _, view, seq = codec.peek(frame)
            if (view, seq) not in self.held:
                self.held[(view, seq)] = (now, unsealed(frame))   # sealed per receiver
                self.counters["certify-hidden"] += 1
            return ()
        if kind == codec.FETCH_REPLY:
            m = codec.decode(frame)
            if m.bitmap:
                self.counters["fetch-reply-stripped"] += 1
                bare = codec.encode_fetch_reply(self.id, m.seq, m.digest, m.batch)
                return ((dst, self.reseal(bare, dst)),)
        return ((dst, frame),)

    def rearm(self) -> bool:
        return self.active or bool(self.held)

    def act(self, now):
        out = []
        for key, (at, frame) in list(self.held.items()):
            if self.active and now - at < self.reveal_after:
                continue
            del self.held[key]
            self.counters["certify-revealed"] += 1
            self.to_all(lambda dst, frame=frame: self.reseal(frame, dst), out)
        return out


class Corrupter(ByzantineReplica):
    """Corrupts, with probability ``p`` each, the bytes of its outgoing SUPPORT shares
    ("share"), CERTIFY signatures ("cert"), CHECKPOINT signatures ("checkpoint") and MAC
    tags ("mac"), keeping everything else valid."""

    kind = "corrupt"

    def __init__(self, inner, seed: int = 0, parts=("share", "cert", "checkpoint", "mac"),
                 p: float = 1.0) -> None:
        super().__init__(inner, seed)
        self.parts = set(parts)
        self.p = p

    def send(self, dst, frame, now):
        if self.rng.random() >= self.p:
            return ((dst, frame),)
        kind = frame_kind(frame)
        rng = self.rng
        options = []
        if kind == codec.SUPPORT and "share" in self.parts and len(frame) > 65 \
                and frame[64]:
            options.append("share")
        if kind == codec.CERTIFY and "cert" in self.parts:
            options.append("cert")
        if kind == codec.CHECKPOINT and "checkpoint" in self.parts:
            options.append("checkpoint")
        if frame_auth(frame) == codec.AUTH_MAC and "mac" in self.parts:
            options.append("mac")
        if not options:
            return ((dst, frame),)
        what = rng.choice(options)
        self.counters[f"{what}-corrupted"] += 1
        if what == "mac":
            return ((dst, frame[:-codec.MAC_SIZE] + flip_byte(frame[-codec.MAC_SIZE:], rng)),)
        m = codec.decode(frame)
        if what == "share":
            bad = self.reseal(codec.encode_support(self.id, m.view, m.seq, m.digest,
                                                   flip_byte(m.share, rng)), dst)
        elif what == "cert":
            bad = self.reseal(codec.encode_certify(self.id, m.view, m.seq, m.digest, m.bitmap,
                                                   flip_byte(m.signature, rng),
                                                   codec.AUTH_MAC), dst)
        else:
            bad = self.reseal(codec.encode_checkpoint(self.id, m.seq, m.state_digest,
                                                      m.chain_digest,
                                                      flip_byte(m.signature, rng),
                                                      codec.AUTH_MAC), dst)
        return ((dst, bad),)


class Replayer(ByzantineReplica):
    """Keeps a uniform sample of every frame it sent or received and, every ``interval``
    seconds, re-sends ``burst`` of them (old views and sequences included) to random
    replicas, or its own to their first destination."""

    kind = "replay"
    interval = 0.05

    def __init__(self, inner, seed: int = 0, burst: int = 6, memory: int = 512) -> None:
        super().__init__(inner, seed)
        self.burst = burst
        self.memory = _Reservoir(memory, self.rng)

    def receive(self, data, now):
        self.memory.offer((-1, bytes(data)))
        return data

    def send(self, dst, frame, now):
        self.memory.offer((dst, frame))
        return ((dst, frame),)

    def act(self, now):
        items = self.memory.items
        out = []
        for _ in range(min(self.burst, len(items))):
            dst, frame = items[self.rng.randrange(len(items))]
            if dst < 0 or self.rng.random() < 0.5:
                dst = self.rng.choice([r for r in range(self.n) if r != self.id])
            self.counters["replayed"] += 1
            out.append(self.emit(dst, frame))
        return out


class Garbler(ByzantineReplica):
    """Flips 1..``max_flips`` random bits of an outgoing frame with probability ``p``: the
    receivers' real codec and authentication must reject or survive it."""

    kind = "garble"

    def __init__(self, inner, seed: int = 0, p: float = 0.3, max_flips: int = 3) -> None:
        super().__init__(inner, seed)
        self.p = p
        self.max_flips = max_flips

    def send(self, dst, frame, now):
        if self.rng.random() < self.p:
            self.counters["garbled"] += 1
            frame = flip_bits(frame, self.rng, 1 + self.rng.randrange(self.max_flips))
        return ((dst, frame),)


class WrongInformer(ByzantineReplica):
    """INFORMs with a wrong result (a changed value or status), re-MACed with its own key
    for the client, so the MAC is valid and only the vote is wrong."""

    kind = "wrong-inform"

    def __init__(self, inner, seed: int = 0, p: float = 1.0) -> None:
        super().__init__(inner, seed)
        self.p = p

    def send(self, dst, frame, now):
        if dst < self.n or frame_kind(frame) != codec.INFORM or self.rng.random() >= self.p:
            return ((dst, frame),)
        m = codec.decode(frame)
        entries = [(index, list(results)) for index, results in m.entries()]
        results = entries[self.rng.randrange(len(entries))][1]   # one message's entry
        i = self.rng.randrange(len(results))
        t, status, value = results[i]
        if value:
            value = flip_byte(value, self.rng)
        elif status == codec.ST_OK:
            status = codec.ST_NOT_FOUND
        else:
            status, value = codec.ST_OK, b"forged"
        results[i] = (t, status, value)
        body = codec.inform_body(m.client, entries, m.tags())
        self.counters["inform-altered"] += 1
        return ((dst, self.reseal(codec.encode_inform(self.id, m.view, m.seq, body), dst)),)


class ViewChangeForger(ByzantineReplica):
    """Every ``interval`` seconds: a VC-REQUEST of its own with fabricated certificates, one
    for a wrong view, an NV-PROPOSE for the next view made of VC-REQUESTs of one sender,
    replays of VC-REQUESTs / NV-PROPOSEs it received (stale), and received VC-REQUESTs with
    an altered entry re-signed as its own. All signed and MACed with its own keys."""

    kind = "forge-view-change"
    interval = 0.1

    def __init__(self, inner, seed: int = 0) -> None:
        super().__init__(inner, seed)
        self.seen = _Reservoir(64, self.rng)

    def receive(self, data, now):
        if frame_kind(data) in (codec.VC_REQUEST, codec.NV_PROPOSE):
            self.seen.offer(bytes(data))
        return data

    def _vc_request(self, view: int) -> bytes:
        rng = self.rng
        inner = self.inner
        low = inner.checkpoints.stable.seq
        entries = []
        for k in sorted(rng.sample(range(low + 1, low + inner.config.window + 1),
                                   min(3, inner.config.window))):
            signers = rng.sample(range(self.n), inner.nf)
            entries.append(codec.VcEntry(codec.ENTRY_CERT, k, max(0, view - rng.randrange(2)),
                                         rng.randbytes(32), bitmap_from_ids(signers, self.n),
                                         rng.randbytes(96)))
        frame = codec.encode_vc_request(self.id, view, inner.checkpoints.stable, entries)
        return self.reseal(frame, -1)

    def act(self, now):
        rng = self.rng
        view = self.inner.view
        out = []
        own = self._vc_request(view)
        self.to_all(lambda dst: own, out)
        self.counters["vc-forged"] += 1
        wrong = self._vc_request(view + 1 + rng.randrange(3) if view == 0 or rng.random() < 0.5
                                 else view - 1)
        self.to_all(lambda dst: wrong, out)
        self.counters["vc-wrong-view"] += 1
        members = [own, wrong, own][:self.inner.nf]
        members += [f for f in self.seen.items if frame_kind(f) == codec.VC_REQUEST][:2]
        nv = codec.encode_nv_propose(self.id, view + 1, members)
        self.to_all(lambda dst: self.reseal(nv, dst), out)
        self.counters["nv-forged"] += 1
        for frame in self.seen.items[:4]:
            dst = rng.choice([r for r in range(self.n) if r != self.id])
            out.append(Send(dst, frame))
            self.counters["vc-replayed"] += 1
        stolen = self._steal()
        if stolen is not None:
            self.to_all(lambda dst: stolen, out)
            self.counters["vc-stolen"] += 1
        return out

    def _steal(self) -> bytes | None:
        requests = [f for f in self.seen.items if frame_kind(f) == codec.VC_REQUEST]
        if not requests:
            return None
        try:
            m = codec.decode(self.rng.choice(requests))
        except WireError:
            return None
        entries = list(m.entries)
        if entries:
            e = entries[0]
            entries[0] = codec.VcEntry(e.type, e.seq, e.view, flip_byte(e.digest, self.rng),
                                       e.bitmap, e.signature)
        frame = codec.encode_vc_request(self.id, m.view, m.checkpoint, entries)
        return self.reseal(frame, -1)


class Mutator(ByzantineReplica):
    """With probability ``p`` an outgoing frame gets one small mutation — view +-1, sequence
    +-1, or (SUPPORT, CERTIFY, FETCH, FETCH-REPLY) a digest reused from another slot — and is
    re-sealed with its own keys so it passes authentication: a SUPPORT share is re-signed on
    the mutated statement, a CHECKPOINT re-signed for the mutated sequence."""

    kind = "mutate"

    def __init__(self, inner, seed: int = 0, p: float = 0.3) -> None:
        super().__init__(inner, seed)
        self.p = p
        self.digests: deque[tuple[int, bytes]] = deque(maxlen=64)

    def send(self, dst, frame, now):
        kind = frame_kind(frame)
        if kind in (codec.SUPPORT, codec.CERTIFY, codec.FETCH, codec.FETCH_REPLY):
            self.digests.append((codec.peek(frame)[3], bytes(frame[32:64])))
        if kind == codec.REQUEST or self.rng.random() >= self.p:
            return ((dst, frame),)
        mutated = self.mutate(frame, dst)
        return ((dst, mutated),) if mutated is not None else ((dst, frame),)

    def _other_digest(self, seq: int) -> bytes:
        others = [d for k, d in self.digests if k != seq]
        return self.rng.choice(others) if others else self.rng.randbytes(32)

    def mutate(self, frame: bytes, dst: int) -> bytes | None:
        rng = self.rng
        kind, _, view, seq = codec.peek(frame)
        choices = ["view+1", "seq+1"]
        if view > 0:
            choices.append("view-1")
        if seq > 1:
            choices.append("seq-1")
        if kind in (codec.SUPPORT, codec.CERTIFY, codec.FETCH, codec.FETCH_REPLY):
            choices.append("digest")
        what = rng.choice(choices)
        v = view + (what == "view+1") - (what == "view-1")
        k = seq + (what == "seq+1") - (what == "seq-1")
        if kind == codec.CHECKPOINT:
            if what.startswith("view"):
                return None
            m = codec.decode(frame)
            k = seq + (1 if rng.random() < 0.5 else self.inner.config.checkpoint_period)
            sig = self.suite.signer.sign(checkpoint_statement(k, m.state_digest, m.chain_digest))
            self.counters["mutated-checkpoint"] += 1
            return self.reseal(codec.encode_checkpoint(self.id, k, m.state_digest,
                                                       m.chain_digest, sig, codec.AUTH_MAC), dst)
        out = with_header(unsealed(frame), view=v, seq=k)
        if what == "digest":
            out = out[:32] + self._other_digest(seq) + out[64:]
        if kind == codec.SUPPORT:
            m = codec.decode(frame)
            digest = out[32:64]
            share = b""
            if m.share:
                share = self.inner.crypto.threshold_signer.share_sign(
                    support_statement(v, k, digest))
            out = codec.encode_support(self.id, v, k, digest, share)
        self.counters[f"mutated-{what}"] += 1
        return self.reseal(out, dst)


class Twins:
    """Two copies of one replica with the same keys (made by ``make(replica_id)``), each
    talking to a part of the cluster: copy 0 to ``group`` (default: the lower half of the
    other replicas), copy 1 to ``other_group`` (default: the rest; the parts may overlap,
    and a replica in both reaches both copies). Client requests go to one copy by client
    parity; both answer clients. ``stop()`` drops copy 1: copy 0 then talks to everyone."""

    kind = "twins"

    def __init__(self, make, replica_id: int, seed: int = 0, group=None,
                 other_group=None) -> None:
        self.copies = [make(replica_id), make(replica_id)]
        self.n = self.copies[0].n
        self.id = replica_id
        others = [r for r in range(self.n) if r != replica_id]
        group = set(group) if group is not None else set(others[:len(others) // 2])
        other = set(other_group) if other_group is not None else set(others) - group
        self.groups = [group, other]
        self.active = True
        self.counters: Counter[str] = Counter()

    def __getattr__(self, name):
        copies = self.__dict__.get("copies")
        if copies is None:
            raise AttributeError(name)
        return getattr(copies[0], name)

    @property
    def inner(self):
        return self.copies[0]

    @property
    def drops(self) -> Counter:
        return self.copies[0].drops + self.copies[1].drops

    @property
    def stats(self) -> Counter:
        return self.copies[0].stats + self.copies[1].stats

    def stop(self) -> None:
        self.active = False

    def _copies_for(self, data: bytes) -> tuple[int, ...]:
        if not self.active:
            return (0,)
        try:
            kind, sender, _, _ = codec.peek(data)
        except WireError:
            return (0,)
        if kind == codec.REQUEST:
            return (sender % 2,)
        return tuple(c for c in (0, 1) if sender in self.groups[c]) or (0,)

    def on_message(self, data: bytes, now: float) -> list:
        out = []
        for c in self._copies_for(data):
            self.counters[f"to-copy-{c}"] += 1
            out += self._out(c, self.copies[c].on_message(data, now))
        return out

    def on_timeout(self, kind: str, key: int, now: float) -> list:
        c, _, inner_kind = kind.partition(":")
        if inner_kind and c in ("0", "1"):
            c = int(c)
            if c == 1 and not self.active:
                return []
            return self._out(c, self.copies[c].on_timeout(inner_kind, key, now))
        return self.copies[0].on_timeout(kind, key, now)

    def _out(self, c: int, actions: list) -> list:
        out = []
        group = self.groups[c] if self.active else None
        for a in actions:
            t = type(a)
            if t is Send:
                if group is None or a.to in group:
                    out.append(a)
                else:
                    self.counters["split"] += 1
            elif t is Broadcast:
                if group is None:
                    out.append(a)
                else:
                    out.extend(Send(dst, a.data) for dst in sorted(group))
            elif t is SetTimer:
                out.append(SetTimer(f"{c}:{a.kind}", a.key, a.at))
            elif t is CancelTimer:
                out.append(CancelTimer(f"{c}:{a.kind}", a.key))
            else:
                out.append(a)
        return out


# ---------------------------------------------------------------------------------- clients

class ByzantineClient:
    """A client id of its own (``SimCluster(byzantine_clients=...)``) driven by ``act``
    every ``interval`` virtual seconds; signs only with its own key."""

    kind = "byzantine-client"
    interval = 0.05

    def __init__(self, sim, seed: int = 0, start: float = 0.0) -> None:
        self.sim = sim
        self.id = sim.attach_client(self)
        self.suite = sim.client_suite(self.id)
        self.n = sim.n
        self.rng = random.Random(seed)
        self.active = True
        self.next_t = 1
        self.view = 0
        self.counters: Counter[str] = Counter()
        self.informs: dict[int, set] = {}
        sim.at(sim.loop.now + start, self._tick)

    def stop(self) -> None:
        self.active = False

    def on_message(self, data: bytes, now: float) -> None:
        try:
            m = codec.decode(data)
        except WireError:
            self.counters["inform-malformed"] += 1
            return
        if m.kind == codec.INFORM:
            self.counters["informs"] += 1
            self.view = max(self.view, m.view)
            for handle, _count, entry in m.votes():
                seen = self.informs.setdefault(handle, set())
                if len(seen) < 16:
                    seen.add(entry)

    def message(self, ops) -> bytes:
        """A REQUEST frame carrying ``ops`` ((t, key, code, value)) signed with our key."""
        unsigned = codec.pack_client_message(self.id, ops)
        return codec.encode_request(unsigned + self.suite.signer.sign(request_statement(unsigned)))

    def fresh_ops(self, count: int) -> list:
        rng = self.rng
        records = self.sim.workload.record_count
        ops = []
        for _ in range(count):
            ops.append((self.next_t, rng.randrange(records), codec.OP_UPDATE,
                        rng.randbytes(self.sim.workload.value_size)))
            self.next_t += 1
        return ops

    def send(self, dst: int, frame: bytes) -> None:
        self.sim.send_from_client(self.id, dst, frame)

    def _tick(self, _=None) -> None:
        if not self.active:
            return
        self.act(self.sim.loop.now)
        self.sim.at(self.sim.loop.now + self.interval, self._tick)

    def act(self, now: float) -> None:
        pass


class DoublePayloadClient(ByzantineClient):
    """Two different client messages with the same first request id, each signed by the
    client, sent to different halves of the replicas (the primary gets one of them)."""

    kind = "double-payload"

    def __init__(self, sim, seed: int = 0, start: float = 0.0) -> None:
        super().__init__(sim, seed, start)
        self.pairs: list[tuple[int, bytes, bytes]] = []

    def act(self, now):
        rng = self.rng
        t = self.next_t
        a_ops = self.fresh_ops(1)
        self.next_t = t
        b_ops = self.fresh_ops(1 + rng.randrange(3))
        a, b = self.message(a_ops), self.message(b_ops)
        replicas = list(range(self.n))
        rng.shuffle(replicas)
        half = len(replicas) // 2
        for r in replicas[:half]:
            self.send(r, a)
        for r in replicas[half:]:
            self.send(r, b)
        if len(self.pairs) < 1024:
            self.pairs.append((t, a, b))
        self.counters["pairs"] += 1


class FloodClient(ByzantineClient):
    """Every ``interval``: ``burst`` fresh signed messages to the primary it believes in
    and to random replicas, and ``replays`` re-sends of its old messages."""

    kind = "flood"
    interval = 0.01

    def __init__(self, sim, seed: int = 0, start: float = 0.0, burst: int = 10,
                 replays: int = 5) -> None:
        super().__init__(sim, seed, start)
        self.burst = burst
        self.replays = replays
        self.sent = _Reservoir(256, self.rng)

    def act(self, now):
        rng = self.rng
        primary = self.sim.config.primary(self.view)
        for _ in range(self.burst):
            frame = self.message(self.fresh_ops(1 + rng.randrange(3)))
            self.sent.offer(frame)
            self.send(primary if rng.random() < 0.7 else rng.randrange(self.n), frame)
            self.counters["flooded"] += 1
        items = self.sent.items
        for _ in range(min(self.replays, len(items))):
            self.send(rng.randrange(self.n), items[rng.randrange(len(items))])
            self.counters["replayed"] += 1


# ---------------------------------------------------------------------------------- issue 14
#
# One faulty party must not stall the cluster: the adversaries below each send one class of
# input that a keyless party, one faulty client or one faulty backup can send, and count what
# they sent. ``poe.sim.adversary_table`` runs each against the identical fault-free run.

def _pool_batch(pool, limit: int, rng: random.Random) -> list[bytes] | None:
    """Client messages from ``pool`` (signed by their clients) totalling at most ``limit``
    operations, in a random order: a batch with valid client signatures but our choice."""
    items = list(pool)
    if not items:
        return None
    rng.shuffle(items)
    chosen, ops = [], 0
    for msg in items:
        nops = int.from_bytes(msg[4:6], "little")
        if ops + nops > limit:
            continue
        chosen.append(msg)
        ops += nops
    return chosen or None


def _batch_messages(frame: bytes) -> list[bytes]:
    try:
        return [bytes(x) for x in codec.decode(frame).batch.messages()]
    except (WireError, AttributeError):
        return []


class RequestReplayer(ByzantineReplica):
    """Keeps the client messages it saw inside PROPOSEs and, every ``interval``, re-sends
    ``burst`` of them as REQUESTs (validly signed by their clients, mostly already executed
    and answered) to the other backups (never the primary)."""

    kind = "replay-requests"
    interval = 0.05

    def __init__(self, inner, seed: int = 0, burst: int = 8) -> None:
        super().__init__(inner, seed)
        self.burst = burst
        self.pool = _Reservoir(256, self.rng)

    def receive(self, data, now):
        if frame_kind(data) == codec.PROPOSE:
            for msg in _batch_messages(data):
                self.pool.offer(msg)
        return data

    def act(self, now):
        items = self.pool.items
        backups = [r for r in range(self.n) if r != self.id and r != self.inner.primary]
        out = []
        for _ in range(min(self.burst, len(items))):
            frame = codec.encode_request(items[self.rng.randrange(len(items))])
            for dst in backups:
                out.append(Send(dst, frame))
                self.counters["request-replayed"] += 1
        return out


class FetchReplyBinder(ByzantineReplica):
    """FETCH-REPLYs that would bind slots to other digests: every ``interval``, unsolicited
    ones for the next positions, each with a batch of real (validly signed) client messages
    it chose, under that batch's digest or under another digest, and (TS) with a forged
    certificate of the current view; and every FETCH-REPLY it owes is sent with another
    batch (under the digest asked for, or under that batch's own)."""

    kind = "bind-fetch-reply"
    interval = 0.05

    def __init__(self, inner, seed: int = 0, ahead: int = 4) -> None:
        super().__init__(inner, seed)
        self.ahead = ahead
        self.pool: deque[bytes] = deque(maxlen=256)

    def receive(self, data, now):
        kind = frame_kind(data)
        if kind == codec.PROPOSE or kind == codec.FETCH_REPLY:
            self.pool.extend(_batch_messages(data))
        elif kind == codec.REQUEST:
            try:
                self.pool.append(bytes(codec.decode(data).client_message))
            except WireError:
                pass
        return data

    def _reply(self, k: int, digest: bytes | None, cert: bool) -> bytes | None:
        inner = self.inner
        batch = _pool_batch(self.pool, inner.config.batch_size, self.rng)
        if batch is None:
            return None
        from poe._core.digest import batch_digest
        b = Batch.from_messages(batch)
        if digest is None:
            digest = batch_digest(b)
        if cert:
            signers = self.rng.sample(range(self.n), inner.nf)
            return codec.encode_fetch_reply(self.id, k, digest, b, inner.view,
                                            bitmap_from_ids(signers, self.n),
                                            self.rng.randbytes(96))
        return codec.encode_fetch_reply(self.id, k, digest, b)

    def send(self, dst, frame, now):
        if dst >= self.n or frame_kind(frame) != codec.FETCH_REPLY:
            return ((dst, frame),)
        m = codec.decode(frame)
        swap = self._reply(m.seq, m.digest if self.rng.random() < 0.5 else None, False)
        if swap is None:
            return ((dst, frame),)
        self.counters["fetch-reply-swapped"] += 1
        return ((dst, self.reseal(swap, dst)),)

    def act(self, now):
        inner = self.inner
        out = []
        first = inner.k_exec + 1
        for k in range(first, first + self.ahead):
            what = self.rng.choice(("own-digest", "other-digest", "cert")
                                   if inner.ts else ("own-digest", "other-digest"))
            digest = self.rng.randbytes(32) if what == "other-digest" else None
            frame = self._reply(k, digest, what == "cert")
            if frame is None:
                return out
            self.counters[f"unsolicited-{what}"] += 1
            self.to_all(lambda dst, frame=frame: self.reseal(frame, dst), out)
        return out


class EarlySupporter(ByzantineReplica):
    """Every ``interval``: SUPPORTs (and, in PBFT, COMMITs) of the current view with random
    digests for far positions — late in the window, at its top and in the next window —
    each share really signed by its own threshold key (TS), MACed with its own keys."""

    kind = "early-support"
    interval = 0.05

    def __init__(self, inner, seed: int = 0, burst: int = 6) -> None:
        super().__init__(inner, seed)
        self.burst = burst

    def act(self, now):
        inner = self.inner
        rng = self.rng
        window = inner.config.window
        low = inner.checkpoints.stable.seq
        view = inner.view
        out = []
        kinds = [codec.SUPPORT] + ([codec.COMMIT] if inner.config.protocol == "pbft" else [])
        for _ in range(self.burst):
            k = rng.choice((low + window // 2 + rng.randrange(1, window // 2 + 1),
                            low + window, low + window + rng.randrange(1, window + 1),
                            low + 4 * window + rng.randrange(window)))
            digest = rng.randbytes(32)
            kind = rng.choice(kinds)
            if kind == codec.COMMIT:
                frame = codec.encode_commit(self.id, view, k, digest)
            else:
                share = b""
                if inner.ts:
                    share = inner.crypto.threshold_signer.share_sign(
                        support_statement(view, k, digest))
                frame = codec.encode_support(self.id, view, k, digest, share)
            self.counters["early-" + ("commit" if kind == codec.COMMIT else "support")] += 1
            self.to_all(lambda dst, frame=frame: self.reseal(frame, dst), out)
        return out


class FetchFlooder(ByzantineReplica):
    """Every ``interval``: FETCH(k, anything) and FETCH(k, a digest it knows) to every other
    replica for ``burst`` positions of the window; counts what it sent and every FETCH-REPLY
    (and byte) it got back: the amplification a faulty replica gets out of FETCH."""

    kind = "fetch-flood"
    interval = 0.01

    def __init__(self, inner, seed: int = 0, burst: int = 16) -> None:
        super().__init__(inner, seed)
        self.burst = burst
        self.digests: dict[int, bytes] = {}

    def receive(self, data, now):
        kind = frame_kind(data)
        if kind == codec.FETCH_REPLY:
            self.counters["replies-received"] += 1
            self.counters["reply-bytes-received"] += len(data)
        elif kind in (codec.PROPOSE, codec.SUPPORT, codec.CERTIFY) and len(data) >= 64:
            if len(self.digests) > 4096:
                self.digests.clear()
            if kind == codec.PROPOSE:
                try:
                    from poe._core.digest import batch_digest
                    self.digests[codec.peek(data)[3]] = batch_digest(codec.decode(data).batch)
                except WireError:
                    pass
            else:
                self.digests[codec.peek(data)[3]] = bytes(data[32:64])
        return data

    def act(self, now):
        inner = self.inner
        rng = self.rng
        low = inner.checkpoints.stable.seq
        window = inner.config.window
        out = []
        for _ in range(self.burst):
            k = low + 1 + rng.randrange(window)
            digest = self.digests.get(k, b"\0" * 32) if rng.random() < 0.5 else b"\0" * 32
            frame = codec.encode_fetch(self.id, k, digest)
            for dst in range(self.n):
                if dst != self.id:
                    sealed = self.reseal(frame, dst)
                    out.append(Send(dst, sealed))
                    self.counters["fetches-sent"] += 1
                    self.counters["fetch-bytes-sent"] += len(sealed)
        return out

    def amplification(self) -> float:
        sent = self.counters["fetch-bytes-sent"]
        return self.counters["reply-bytes-received"] / sent if sent else 0.0


class HugeViewChangeRequester(ByzantineReplica):
    """Every ``interval``: a VC-REQUEST leaving the current view, signed with its own key,
    with far more entries than a correct replica reports (``factor`` x window x (n + 8)
    fabricated certificates or votes), one with a full window of them, and one of those
    for a view above the last it sent (so no duplicate check spares its receivers)."""

    kind = "huge-vc-request"
    interval = 0.1

    def __init__(self, inner, seed: int = 0, factor: int = 2) -> None:
        super().__init__(inner, seed)
        self.factor = factor

    def _entries(self, count: int) -> list:
        inner = self.inner
        rng = self.rng
        low = inner.checkpoints.stable.seq
        window = inner.config.window
        out = []
        for i in range(count):
            k = low + 1 + i % window
            if inner.ts:
                signers = rng.sample(range(self.n), inner.nf)
                out.append(codec.VcEntry(codec.ENTRY_CERT, k, inner.view, rng.randbytes(32),
                                         bitmap_from_ids(signers, self.n), rng.randbytes(96)))
            else:
                out.append(codec.VcEntry(codec.ENTRY_SUPPORTED, k, inner.view,
                                         rng.randbytes(32), b"", b""))
        return out

    def act(self, now):
        inner = self.inner
        window = inner.config.window
        out = []
        self.climb = max(getattr(self, "climb", 0), inner.view) + 1
        for what, count, view in (("huge", self.factor * window * (self.n + 8) + 1, inner.view),
                                  ("full", window, inner.view),
                                  ("climbing", window, self.climb)):
            frame = codec.encode_vc_request(self.id, view, inner.checkpoints.stable,
                                            self._entries(count))
            sealed = self.reseal(frame, -1)
            self.to_all(lambda dst, sealed=sealed: sealed, out)
            self.counters[f"vc-request-{what}"] += 1
            self.counters["vc-request-entries"] += count
        return out


class GarbageProposer(ByzantineReplica):
    """A backup cannot propose validly but can send PROPOSE-shaped frames: every
    ``interval``, to every other replica, a PROPOSE of its own for the next positions
    (a batch of real client messages), one above ``batch_size`` (also for the next window),
    one naming the primary as sender (MACed with its own key) and one with random body
    bytes (MACed with its own key)."""

    kind = "garbage-propose"
    interval = 0.05

    def __init__(self, inner, seed: int = 0) -> None:
        super().__init__(inner, seed)
        self.pool: deque[bytes] = deque(maxlen=512)

    def receive(self, data, now):
        if frame_kind(data) == codec.PROPOSE:
            self.pool.extend(_batch_messages(data))
        return data

    def _frames(self) -> list[tuple[str, bytes]]:
        inner = self.inner
        rng = self.rng
        view, limit = inner.view, inner.config.batch_size
        k = inner.k_exec + 1 + rng.randrange(4)
        out = []
        batch = _pool_batch(self.pool, limit, rng)
        if batch is not None:
            out.append(("own", codec.encode_propose(self.id, view, k, batch)))
            out.append(("as-primary", codec.encode_propose(inner.primary, view, k, batch)))
            big, ops = [], 0
            for msg in self.pool:
                big.append(msg)
                ops += int.from_bytes(msg[4:6], "little")
                if ops > limit:
                    break
            if ops > limit:
                far = k + inner.config.window
                out.append(("oversized", codec.encode_propose(self.id, view, k, big)))
                out.append(("oversized-next-window",
                            codec.encode_propose(self.id, view, far, big)))
        body = rng.randbytes(rng.randrange(1, 2048))
        frame = bytearray(codec.encode_propose(self.id, view, k, batch)) if batch else None
        if frame is not None:
            raw = bytes(frame[:12]) + len(body).to_bytes(4, "little") + bytes(frame[16:32]) \
                + body
            out.append(("random-body", raw))
        return out

    def act(self, now):
        out = []
        for what, frame in self._frames():
            self.counters[f"propose-{what}"] += 1
            self.to_all(lambda dst, frame=frame: self.reseal(frame, dst), out)
        return out


class AnsweredRetryClient(ByzantineClient):
    """The "answered retry" attack: sends a fresh message to the primary every
    ``fresh_every`` seconds and, once nf replicas answered it, keeps re-sending its
    ``keep`` newest answered messages to every backup ``per_timeout`` times per
    view-change timeout, forever."""

    kind = "answered-retry"

    def __init__(self, sim, seed: int = 0, start: float = 0.0, per_timeout: int = 4,
                 fresh_every: float = 2.0, keep: int = 4) -> None:
        self.interval = sim.config.view_change_timeout_s / per_timeout
        super().__init__(sim, seed, start)
        self.fresh_every = fresh_every
        self.keep = keep
        self.last_fresh = -1e18
        self.waiting: dict[int, tuple[bytes, set]] = {}      # first t -> (frame, answered by)
        self.answered: deque[bytes] = deque(maxlen=keep)

    def on_message(self, data, now):
        super().on_message(data, now)
        try:
            m = codec.decode(data)
        except WireError:
            return
        if m.kind != codec.INFORM:
            return
        for j in range(len(m)):
            handle = m.request_id(j)
            entry = self.waiting.get(handle)
            if entry is not None:
                entry[1].add(m.sender)
                if len(entry[1]) >= self.sim.config.nf:
                    del self.waiting[handle]
                    self.answered.append(entry[0])
                    self.counters["answered"] += 1

    def act(self, now):
        cfg = self.sim.config
        if now - self.last_fresh >= self.fresh_every:
            self.last_fresh = now
            t = self.next_t
            frame = self.message(self.fresh_ops(1))
            self.waiting = {t: (frame, set())}
            self.send(cfg.primary(self.view), frame)
            self.counters["fresh"] += 1
        for frame in self.answered:
            for r in range(self.n):
                if r != cfg.primary(self.view):
                    self.send(r, frame)
                    self.counters["answered-retried"] += 1


class OversizedClient(ByzantineClient):
    """Every ``interval``: a message of its own, validly signed, with more operations than
    ``batch_size`` (no batch may hold it), to every backup (and the primary)."""

    kind = "oversized"
    interval = 0.05

    def act(self, now):
        limit = self.sim.config.batch_size
        count = min(codec.MAX_OPS_PER_MESSAGE, limit + 1 + self.rng.randrange(8))
        if count <= limit:
            return
        frame = self.message(self.fresh_ops(count))
        for r in range(self.n):
            self.send(r, frame)
            self.counters["oversized-sent"] += 1


class PendingHogClient(ByzantineClient):
    """One client hogging the primary's queue of pending messages: every ``interval``,
    ``burst`` fresh, validly signed one-operation messages to the primary it believes in
    (and no retries): it tries to keep the queue full so that correct clients' messages
    find no room."""

    kind = "hog-pending"
    interval = 0.01

    def __init__(self, sim, seed: int = 0, start: float = 0.0, burst: int = 200) -> None:
        super().__init__(sim, seed, start)
        self.burst = burst

    def act(self, now):
        primary = self.sim.config.primary(self.view)
        for _ in range(self.burst):
            self.send(primary, self.message(self.fresh_ops(1)))
            self.counters["hog-sent"] += 1


# ---------------------------------------------------------------------------------- keyless

class KeylessActor:
    """A party with no key at all (no replica, no client): it can only put bytes on the
    network (``sim.inject``) and see what everyone sees — the traffic (``sim.tap``) and the
    public progress of the cluster (views and positions are in every frame's header; it
    reads them off correct replicas for brevity). Driven by ``act`` every ``interval``."""

    kind = "keyless"
    interval = 0.02

    def __init__(self, sim, seed: int = 0, start: float = 0.0) -> None:
        self.sim = sim
        self.n = sim.n
        self.rng = random.Random(seed)
        self.active = True
        self.counters: Counter[str] = Counter()
        sim.keyless.append(self)
        sim.at(sim.loop.now + start, self._tick)

    def stop(self) -> None:
        self.active = False

    def _tick(self, _=None) -> None:
        if not self.active:
            return
        self.act(self.sim.loop.now)
        self.sim.at(self.sim.loop.now + self.interval, self._tick)

    def observed(self):
        """A correct replica (the public view, executed position and stable checkpoint)."""
        sim = self.sim
        for r in range(self.n):
            if r not in sim.checker.byzantine and r not in sim.crashed:
                return sim.replicas[r]
        return sim.replicas[0]

    def inject(self, dst: int, frame: bytes) -> None:
        self.sim.inject(dst, frame, self.sim.net.faults.latency_s)

    def fake_auth(self, frame: bytes, how: str) -> bytes:
        """``frame`` (auth none) as sent: bare, with a MAC flag and a random tag, or with a
        signature flag and a random signature."""
        if how == "none":
            return frame
        b = bytearray(frame)
        if how == "fake-mac":
            b[4] = (b[4] & ~3) | codec.AUTH_MAC
            return bytes(b) + self.rng.randbytes(codec.MAC_SIZE)
        b[4] = (b[4] & ~3) | codec.AUTH_SIG
        return bytes(b) + self.rng.randbytes(codec.SIG_SIZE)

    def act(self, now: float) -> None:
        pass


class ForgedCertifier(KeylessActor):
    """CERTIFY frames naming the current primary for the next positions, with invalid
    certificates (random signature, nf signers in the bitmap), bare, with a fake MAC or a
    fake signature, to every backup."""

    kind = "forge-certify"

    def __init__(self, sim, seed: int = 0, start: float = 0.0, burst: int = 4) -> None:
        super().__init__(sim, seed, start)
        self.burst = burst

    def act(self, now):
        r = self.observed()
        rng = self.rng
        view, primary, nf = r.view, self.sim.config.primary(r.view), self.sim.config.nf
        for i in range(self.burst):
            k = r.k_exec + 1 + i
            signers = rng.sample(range(self.n), nf)
            frame = codec.encode_certify(primary, view, k, rng.randbytes(32),
                                         bitmap_from_ids(signers, self.n), rng.randbytes(96))
            how = rng.choice(("none", "fake-mac", "fake-sig"))
            for dst in range(self.n):
                if dst != primary:
                    self.inject(dst, self.fake_auth(frame, how))
                    self.counters[f"certify-{how}"] += 1


class ForgedCheckpointer(KeylessActor):
    """CHECKPOINT frames claiming to be from each replica, for the next checkpoints and one
    far ahead, with random digests and signatures, bare or with a fake MAC, to every
    other replica."""

    kind = "forge-checkpoint"

    def act(self, now):
        r = self.observed()
        rng = self.rng
        cfg = self.sim.config
        period = cfg.checkpoint_period
        low = r.checkpoints.stable.seq
        for k in (low + period, low + 2 * period, low + cfg.window + period,
                  low + 10 * cfg.window):
            claimed = rng.randrange(self.n)
            frame = codec.encode_checkpoint(claimed, k, rng.randbytes(32), rng.randbytes(32),
                                            rng.randbytes(codec.SIG_SIZE))
            how = rng.choice(("none", "fake-mac"))
            for dst in range(self.n):
                if dst != claimed:
                    self.inject(dst, self.fake_auth(frame, how))
                    self.counters[f"checkpoint-{how}"] += 1


class ForgedRetrier(KeylessActor):
    """Eavesdrops client REQUESTs on the network and re-sends them to the backups: with a
    broken signature (a forged retry of a client's id), and — with probability
    ``verbatim`` — unchanged (a network replay of a message its client signed)."""

    kind = "forge-retry"

    def __init__(self, sim, seed: int = 0, start: float = 0.0, burst: int = 4,
                 verbatim: float = 0.0) -> None:
        super().__init__(sim, seed, start)
        self.burst = burst
        self.verbatim = verbatim
        self.seen = _Reservoir(256, self.rng)
        previous = sim.tap

        def tap(src, dst, data, previous=previous):
            if previous is not None:
                previous(src, dst, data)
            if src >= self.n and frame_kind(data) == codec.REQUEST:
                self.seen.offer(bytes(data))
        sim.tap = tap

    def act(self, now):
        items = self.seen.items
        if not items:
            return
        primary = self.sim.config.primary(self.observed().view)
        for _ in range(self.burst):
            frame = items[self.rng.randrange(len(items))]
            if self.rng.random() >= self.verbatim:
                frame = frame[:-codec.SIG_SIZE] + flip_byte(frame[-codec.SIG_SIZE:], self.rng)
                what = "forged"
            else:
                what = "verbatim"
            for dst in range(self.n):
                if dst != primary:
                    self.inject(dst, frame)
                    self.counters[f"retry-{what}"] += 1


# ---------------------------------------------------------------------------------- registry

# name -> (class, primary only: misbehaves only as the primary of view 0)
REPLICA_ADVERSARIES = {
    "equivocate": (Equivocator, True),
    "hide-certificate": (HiddenCertifier, True),
    "withhold": (Withholder, False),
    "corrupt": (Corrupter, False),
    "replay": (Replayer, False),
    "garble": (Garbler, False),
    "wrong-inform": (WrongInformer, False),
    "forge-view-change": (ViewChangeForger, False),
    "mutate": (Mutator, False),
    "twins": (Twins, False),
    # issue 14: one faulty backup
    "replay-requests": (RequestReplayer, False),
    "bind-fetch-reply": (FetchReplyBinder, False),
    "early-support": (EarlySupporter, False),
    "fetch-flood": (FetchFlooder, False),
    "huge-vc-request": (HugeViewChangeRequester, False),
    "garbage-propose": (GarbageProposer, False),
}

CLIENT_ADVERSARIES = {
    "double-payload": DoublePayloadClient,
    "flood": FloodClient,
    # issue 14: one faulty client
    "answered-retry": AnsweredRetryClient,
    "oversized": OversizedClient,
    "hog-pending": PendingHogClient,
}

# issue 14: parties without any key (``install_keyless``)
KEYLESS_ADVERSARIES = {
    "forge-certify": ForgedCertifier,
    "forge-checkpoint": ForgedCheckpointer,
    "forge-retry": ForgedRetrier,
}


def install(sim, replica_id: int, kind: str, seed: int = 0, **params):
    """Make replica ``replica_id`` of ``sim`` Byzantine of ``kind`` (REPLICA_ADVERSARIES):
    wrap it (Twins: two fresh copies), put the wrapper in ``sim.replicas`` and mark it in
    the checker. Returns the adversary."""
    cls, _ = REPLICA_ADVERSARIES[kind]
    if cls is Twins:
        adversary = Twins(sim._new_replica, replica_id, seed, **params)
    else:
        adversary = cls(sim.replicas[replica_id], seed, **params)
    sim.replicas[replica_id] = adversary
    sim.checker.byzantine.add(replica_id)
    return adversary


def install_client(sim, kind: str, seed: int = 0, **params):
    """Start a Byzantine client of ``kind`` (CLIENT_ADVERSARIES) on a free client id."""
    return CLIENT_ADVERSARIES[kind](sim, seed, **params)




def install_keyless(sim, kind: str, seed: int = 0, **params):
    """Start a party of ``kind`` (KEYLESS_ADVERSARIES) that holds no key: neither a replica
    nor a client, it only injects bytes (``SimCluster.keyless``; stopped with the faults)."""
    return KEYLESS_ADVERSARIES[kind](sim, seed, **params)
