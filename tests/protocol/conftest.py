"""Helpers for driving PoE protocol objects by hand: a seeded fake-crypto cluster, builders
for correctly (or deliberately wrongly) authenticated frames, and action filters."""
from __future__ import annotations

import dataclasses

import pytest

from poe._core import codec
from poe._core.codec import Batch
from poe._core.digest import batch_digest
from poe.crypto.base import bitmap_from_ids, client, replica
from poe.crypto.fake import FakeCrypto
from poe.crypto.statements import checkpoint_statement, request_statement, support_statement
from poe.protocol.actions import Broadcast, Send
from poe.protocol.config import ProtocolConfig
from poe.protocol.poe.client import PoEClient
from poe.protocol.poe.replica import PoEReplica
from poe.protocol.registry import make_client, make_replica


class Harness:
    """One cluster's keys and configuration; builds replicas, clients and frames."""

    def __init__(self, mode: str = "ts", n: int = 4, clients: int = 4, **settings) -> None:
        self.mode = mode
        self.n = n
        self.config = ProtocolConfig(n=n, mode=mode, **settings)
        self.fc = FakeCrypto(n, clients, 11, purpose="test")
        self.public = self.fc.suite(None)           # verifiers only (an observer)
        self.clients: dict[int, list] = {}          # the PoEClients made, by client id
        self._suites: dict = {}

    # ---------------------------------------------------------------- parties

    def suite(self, party):
        s = self._suites.get(party)
        if s is None:
            s = self.fc.suite(party)
            if self.mode == "mac":
                s = dataclasses.replace(s, threshold_signer=None, threshold=None)
            self._suites[party] = s
        return s

    def replica(self, i: int) -> PoEReplica:
        """Replica i of the configured protocol (PoE, or the PBFT baseline)."""
        return make_replica(self.config, i, self.suite(replica(i)))

    def client(self, j: int, **kw) -> PoEClient:
        c = make_client(self.config, j, self.suite(client(j)), **kw)
        self.clients.setdefault(j, []).append(c)
        return c

    def tag(self, cid: int, t: int) -> bytes:
        """The INFORM tag of client ``cid``'s pending message ``t`` (its signature[:16]),
        as a correct replica would send it; zeros if no client of ours waits for it."""
        for c in self.clients.get(cid, ()):
            p = c.pending.get(t)
            if p is not None:
                return p.tag
        return bytes(codec.INFORM_TAG_SIZE)

    # ---------------------------------------------------------------- client messages

    def message(self, cid: int, ops, *, good: bool = True) -> bytes:
        """A signed client message; ``good=False`` gives it a wrong signature."""
        unsigned = codec.pack_client_message(cid, ops)
        sig = self.suite(client(cid)).signer.sign(request_statement(unsigned))
        if not good:
            sig = bytes(b ^ 0x5A for b in sig)
        return unsigned + sig

    def request(self, cid: int, ops, *, good: bool = True) -> bytes:
        return codec.encode_request(self.message(cid, ops, good=good))

    @staticmethod
    def batch(messages) -> Batch:
        return Batch.from_messages(list(messages))

    @staticmethod
    def digest(messages) -> bytes:
        return batch_digest(Batch.from_messages(list(messages)))

    # ---------------------------------------------------------------- authentication

    def mac(self, sender: int, to: int, frame: bytes) -> bytes:
        """``frame`` sealed with the MAC replica ``sender`` computes for replica ``to``."""
        return codec.seal(frame, self.suite(replica(sender)).macs.mac(replica(to), frame))

    def share(self, signer: int, v: int, k: int, digest: bytes) -> bytes:
        return self.suite(replica(signer)).threshold_signer.share_sign(
            support_statement(v, k, digest))

    def cert(self, v: int, k: int, digest: bytes, signers=(0, 1, 2)):
        stmt = support_statement(v, k, digest)
        shares = {i: self.share(i, v, k, digest) for i in signers}
        return self.public.threshold.combine(shares, stmt)

    # ---------------------------------------------------------------- replica frames

    def propose(self, to: int, k: int, messages, *, v: int = 0, sender: int = 0) -> bytes:
        return self.mac(sender, to, codec.encode_propose(sender, v, k, list(messages)))

    def support(self, sender: int, to: int, k: int, digest: bytes, *, v: int = 0,
                share: bytes | None = None) -> bytes:
        if share is None:
            share = self.share(sender, v, k, digest) if self.mode == "ts" else b""
        return self.mac(sender, to, codec.encode_support(sender, v, k, digest, share))

    def certify(self, k: int, digest: bytes, *, v: int = 0, signers=(0, 1, 2),
                cert=None, sender: int | None = None, to: int = 1) -> bytes:
        """CERTIFY of the primary of view ``v`` (or ``sender``), MAC-sealed for ``to``."""
        cert = cert if cert is not None else self.cert(v, k, digest, signers)
        sender = v % self.n if sender is None else sender
        return self.mac(sender, to, codec.encode_certify(sender, v, k, digest, cert.bitmap,
                                                         cert.signature, codec.AUTH_MAC))

    def commit_vote(self, sender: int, to: int, k: int, digest: bytes, *, v: int = 0) -> bytes:
        """COMMIT(v, k, h) of the PBFT baseline, MAC-sealed for ``to``."""
        return self.mac(sender, to, codec.encode_commit(sender, v, k, digest))

    def checkpoint(self, sender: int, k: int, state: bytes, chain: bytes, *,
                   to: int = 1) -> bytes:
        """Signed CHECKPOINT of ``sender``, MAC-sealed for ``to``."""
        sig = self.suite(replica(sender)).signer.sign(checkpoint_statement(k, state, chain))
        return self.mac(sender, to, codec.encode_checkpoint(sender, k, state, chain, sig,
                                                            codec.AUTH_MAC))

    def fetch(self, sender: int, to: int, k: int, digest: bytes) -> bytes:
        return self.mac(sender, to, codec.encode_fetch(sender, k, digest))

    def fetch_reply(self, sender: int, to: int, k: int, messages, *, digest=None,
                    cert=None, cert_view: int = 0) -> bytes:
        messages = list(messages)
        digest = digest if digest is not None else self.digest(messages)
        if cert is None:
            frame = codec.encode_fetch_reply(sender, k, digest, messages)
        else:
            frame = codec.encode_fetch_reply(sender, k, digest, messages, cert_view,
                                             cert.bitmap, cert.signature)
        return self.mac(sender, to, frame)

    def inform(self, sender: int, cid: int, k: int, results, *, v: int = 0,
               index: int = 0, entries=None, final: bool = False) -> bytes:
        """Replica ``sender``'s sealed INFORM to ``cid`` for batch k: one entry (index,
        results), or ``entries`` [(idx, results)] of several messages."""
        entries = [(index, results)] if entries is None else entries
        tags = [self.tag(cid, list(res)[0][0]) for _, res in entries]
        frame = codec.encode_inform(sender, v, k, codec.inform_body(cid, entries, tags),
                                    final=final)
        return codec.seal(frame, self.suite(replica(sender)).macs.mac(client(cid), frame))

    def bitmap(self, ids) -> bytes:
        return bitmap_from_ids(ids, self.n)

    # ---------------------------------------------------------------- drive a slot

    def commit(self, r: PoEReplica, k: int, messages, now: float = 0.0) -> list:
        """Backup ``r`` accepts PROPOSE(0, k, messages) and view-commits it: with the
        certificate (TS) or with the SUPPORT of one more backup (MAC: PROPOSE + own + 1)."""
        out = r.on_message(self.propose(r.id, k, messages), now)
        if self.mode == "ts":
            return out + r.on_message(self.certify(k, self.digest(messages), to=r.id), now)
        other = 2 if r.id != 2 else 3
        return out + r.on_message(self.support(other, r.id, k, self.digest(messages)), now)

    def transfer_snapshot(self, r: PoEReplica, ahead: PoEReplica, k: int,
                          now: float = 0.0) -> list:
        """``ahead`` executed up to checkpoint k: r gets nf CHECKPOINT votes for it (from
        replicas other than r), asks for the state and adopts ``ahead``'s snapshot of k."""
        state, chain = ahead.kv.state_digest(), ahead.head
        out = []
        for s in [s for s in range(self.n) if s != r.id][:self.config.nf]:
            out += r.on_message(self.checkpoint(s, k, state, chain, to=r.id), now)
        assert r.transfer is not None and r.transfer.seq == k
        frame = codec.encode_state_reply(ahead.id, 0, k, snapshot=ahead.snapshot_bytes(k))
        out += r.on_message(self.mac(ahead.id, r.id, frame), now)
        assert r.k_exec == k and r.stats["state-transfers"] == 1, r.drops
        return out

    # ---------------------------------------------------------------- action filters

    @staticmethod
    def of(out, kind) -> list:
        return [a for a in out if isinstance(a, kind)]

    @staticmethod
    def sends(out, msg_kind=None) -> list:
        return [a for a in out if isinstance(a, Send)
                and (msg_kind is None or codec.peek(a.data)[0] == msg_kind)]

    def to_all(self, out, msg_kind, sender: int) -> list:
        """The one ``msg_kind`` message ``sender`` sent every other replica, each copy
        MAC-sealed for its receiver (CERTIFY, CHECKPOINT): [decoded], or [] if none."""
        sends = self.sends(out, msg_kind)
        if not sends:
            return []
        assert sorted(s.to for s in sends) == [i for i in range(self.n) if i != sender]
        frames = [codec.decode(s.data) for s in sends]
        for s, m in zip(sends, frames):
            assert m.auth_kind == codec.AUTH_MAC and self.suite(replica(s.to)).macs.verify(
                replica(sender), m.signed, m.auth)
        assert len({bytes(m.signed) for m in frames}) == 1
        return frames[:1]

    @staticmethod
    def broadcasts(out, msg_kind=None) -> list:
        return [a for a in out if isinstance(a, Broadcast)
                and (msg_kind is None or codec.peek(a.data)[0] == msg_kind)]

    @staticmethod
    def state_of(r: PoEReplica) -> tuple:
        """What a dropped input must leave unchanged."""
        return (r.k_exec, r.view, r.status, r.window.low, r.window.high, r.head, r.next_k,
                r.kv.state_digest(), r.kv.executed_seq, len(r.ready), len(r.open_messages),
                r.checkpoints.stable.seq)


@pytest.fixture
def ts() -> Harness:
    return Harness("ts")


@pytest.fixture
def mac() -> Harness:
    return Harness("mac")


@pytest.fixture(params=["ts", "mac"])
def both(request) -> Harness:
    return Harness(request.param)


@pytest.fixture
def cluster():
    """Factory: ``cluster(mode, **settings)`` -> Harness with those protocol settings."""
    return Harness
