"""The replica store (poe/storage): round trips, row checks, foreign and garbage files, vote
equivocation refusal, and the chain checks of check_store."""
from __future__ import annotations

import hashlib
import sqlite3

import pytest
from poe._core.codec import CheckpointProof
from poe._core.digest import block_hash

from poe.crypto.base import Certificate
from poe.protocol.poe.view_change import NOOP_DIGEST
from poe.storage.store import (
    REPAIR,
    Block,
    Store,
    StoreError,
    StoreMismatch,
    StoreVersionError,
    decode_signatures,
    encode_signatures,
    split_results,
)
from poe.storage.verify import check_store

GENESIS = bytes(range(32))


def _chain(count: int, start: int = 0, head: bytes = GENESIS) -> list[Block]:
    out = []
    for k in range(start + 1, start + count + 1):
        h = block_hash(k, NOOP_DIGEST, head)
        out.append(Block(k, 0, NOOP_DIGEST, head, h, None, None))
        head = h
    return out


def _store(tmp_path, **kw) -> Store:
    return Store(tmp_path / "d", genesis=GENESIS, replica_id=1, **kw)


def test_blocks_votes_and_view_survive_a_reopen(tmp_path):
    s = _store(tmp_path)
    for b in _chain(5):
        s.append_block(b)
    s.append_block(Block(6, 2, NOOP_DIGEST, b.hash, block_hash(6, NOOP_DIGEST, b.hash), None,
                         Certificate(b"\x07", b"s" * 96)))
    s.truncate_above(5)
    assert s.persist_vote("support", 3, 9, b"a" * 32)
    s.set_view(3)
    s.set_left(2)
    s.commit()
    s.close()
    s = _store(tmp_path)
    assert [b.seq for b in s.blocks()] == [1, 2, 3, 4, 5]
    assert s.head() == (5, _chain(5)[-1].hash)
    assert (s.view, s.left_view) == (3, 2)
    assert not s.persist_vote("support", 3, 9, b"b" * 32)     # would be equivocation
    assert s.persist_vote("support", 3, 9, b"a" * 32)         # the same vote again is fine
    report = check_store(s, None, n=4, nf=3, ts=False)
    assert report.ok and report.height == 5 and report.head == _chain(5)[-1].hash
    s.close()


def test_uncommitted_writes_are_not_in_the_store(tmp_path):
    s = _store(tmp_path)
    s.append_block(_chain(1)[0])
    s.db.close()                              # a crash before the loop turn's commit
    s = _store(tmp_path)
    assert list(s.blocks()) == []


def test_a_flipped_byte_in_a_row_names_the_block_and_the_repair(tmp_path):
    s = _store(tmp_path)
    for b in _chain(3):
        s.append_block(b)
    s.commit()
    s.db.execute("UPDATE blocks SET view=7 WHERE seq=2")      # no new row check
    with pytest.raises(StoreError) as err:
        list(s.blocks())
    assert "block 2 fails its row check" in str(err.value) and REPAIR in str(err.value)


def test_a_broken_link_is_reported_as_the_first_bad_block(tmp_path):
    s = _store(tmp_path)
    blocks = _chain(4)
    bad = Block(3, 0, NOOP_DIGEST, b"\1" * 32, block_hash(3, NOOP_DIGEST, b"\1" * 32), None,
                None)
    for b in blocks[:2] + [bad]:
        s.append_block(b)
    report = check_store(s, None, n=4, nf=3, ts=False)
    assert report.bad == (3, "previous hash does not match the block before it")
    assert report.height == 2
    s.append_block(Block(3, 0, b"\2" * 32, blocks[1].hash, block_hash(3, b"\2" * 32,
                         blocks[1].hash), None, None))
    assert check_store(s, None, n=4, nf=3, ts=False).bad == (3, "batch missing")
    s.append_block(Block(3, 0, NOOP_DIGEST, blocks[1].hash, b"\3" * 32, None, None))
    assert "block hash" in check_store(s, None, n=4, nf=3, ts=False).bad[1]


def test_a_store_of_another_cluster_or_replica_is_refused(tmp_path):
    _store(tmp_path).close()
    with pytest.raises(StoreError, match="another cluster"):
        Store(tmp_path / "d", genesis=b"\x09" * 32, replica_id=1)
    with pytest.raises(StoreError, match="another replica") as err:
        Store(tmp_path / "d", genesis=GENESIS, replica_id=2)
    # not damage: no quarantine advice (issue 16: never advise destroying data on what may
    # be the configuration's fault)
    assert type(err.value) is StoreMismatch and "repair:" not in str(err.value)
    assert "(replica 1), not replica 2" in str(err.value)


def test_a_configuration_mismatch_names_the_setting_and_advises_no_repair(tmp_path):
    written = b"poe-config/1|cluster=abc|n=4|mode=ts|records=10|value=100|seed=1|zero=0"
    Store(tmp_path / "d", genesis=GENESIS, replica_id=1, genesis_config=written).close()
    other = written.replace(b"mode=ts", b"mode=mac").replace(b"records=10", b"records=99")
    with pytest.raises(StoreMismatch) as err:
        Store(tmp_path / "d", genesis=b"\x09" * 32, replica_id=-1, readonly=True,
              genesis_config=other + b"|protocol=pbft")
    text = str(err.value)
    assert "protocol.mode: store ts, configuration mac" in text
    assert "data.record_count: store 10, configuration 99" in text
    assert "protocol.protocol: store poe, configuration pbft" in text
    assert "repair:" not in text and "quarantine ledger" not in text
    assert "do not quarantine" in text
    # a store written before the settings were kept: says what the genesis is made of
    Store(tmp_path / "old", genesis=GENESIS, replica_id=1).close()
    with pytest.raises(StoreMismatch, match="protocol.mode, protocol.protocol"):
        Store(tmp_path / "old", genesis=b"\x09" * 32, replica_id=1, genesis_config=other)


def test_a_store_of_the_previous_format_is_refused_by_name(tmp_path):
    """A store written before the kv's exactly-once window grew to 1024 ids (format
    poe-store/1: version-1 state digests in its checkpoints, a version-1 snapshot) is never
    read: the error says which format, why, and what to do; it is not called damage (no
    quarantine advice: a quarantined store would not help either)."""
    s = _store(tmp_path)
    s._meta_set("format", b"poe-store/1")
    s.commit()
    s.close()
    for readonly in (False, True):
        with pytest.raises(StoreVersionError) as err:
            Store(tmp_path / "d", genesis=GENESIS, replica_id=1, readonly=readonly)
        text = str(err.value)
        assert "poe-store/1" in text and "poe-store/2" in text and "version 1" in text
        assert "empty data directories" in text and "repair:" not in text
        assert isinstance(err.value, StoreError)


def test_a_version_1_snapshot_is_refused_by_name(tmp_path, monkeypatch):
    from poe._core.kv import KVStore

    from poe.storage import verify
    s = _store(tmp_path)
    monkeypatch.setattr(verify, "checkpoint_proof_ok", lambda *a: True)   # signatures aside
    kv = KVStore()
    kv.execute_noop(1)
    snap = kv.snapshot()
    old = b"PoE/KV-SNAP/v1\0\0" + snap[16:-32]
    s._set_checkpoint(0, CheckpointProof(1, kv.state_digest(), b"\0" * 32, ((0, b"x"),)),
                      old + hashlib.sha256(old).digest())
    with pytest.raises(StoreError, match="snapshot of checkpoint 1: a kv snapshot of "
                                         "version 1"):
        check_store(s, None, n=4, nf=3, ts=False)


@pytest.mark.parametrize("content", [b"", b"garbage" * 1000,
                                     b"SQLite format 3\0" + b"\xff" * 5000])
def test_a_garbage_file_is_one_store_error(tmp_path, content):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "ledger.db").write_bytes(content)
    if not content:
        _store(tmp_path).close()          # an empty file is a fresh database
        return
    with pytest.raises(StoreError) as err:
        _store(tmp_path)
    assert REPAIR in str(err.value)


def test_a_ledger_ending_below_the_stable_checkpoint_or_a_bad_snapshot_is_bad(tmp_path,
                                                                           monkeypatch):
    from poe._core.kv import KVStore

    from poe.storage import verify
    s = _store(tmp_path)
    for b in _chain(2):
        s.append_block(b)
    monkeypatch.setattr(verify, "checkpoint_proof_ok", lambda *a: True)   # signatures aside
    kv = KVStore()
    for k in range(1, 6):
        kv.execute_noop(k)
    proof = CheckpointProof(5, kv.state_digest(), b"\0" * 32, ((0, b"x"),))
    s._set_checkpoint(0, proof, kv.snapshot())
    report = check_store(s, None, n=4, nf=3, ts=False)
    assert report.bad[0] == 3 and "below the stable checkpoint 5" in report.bad[1]
    s._set_checkpoint(0, proof, kv.snapshot()[:-1])
    with pytest.raises(StoreError, match="snapshot of checkpoint 5"):
        check_store(s, None, n=4, nf=3, ts=False)
    other = CheckpointProof(5, b"\1" * 32, b"\0" * 32, ((0, b"x"),))
    s._set_checkpoint(0, other, kv.snapshot())
    with pytest.raises(StoreError, match="does not hash"):
        check_store(s, None, n=4, nf=3, ts=False)


def test_signature_lists_round_trip_and_reject_malformed_bytes():
    sigs = ((0, b"a" * 64), (3, b"b" * 64))
    assert decode_signatures(encode_signatures(sigs)) == sigs
    data = encode_signatures(sigs)
    assert decode_signatures(data[:-1]) is None
    assert decode_signatures(data + b"\0") is None
    assert decode_signatures(b"\x01") is None


def test_the_sync_policy_sets_sqlite_synchronous(tmp_path):
    for policy, level in (("batch", 2), ("checkpoint", 1), ("none", 0)):
        s = Store(tmp_path / policy, genesis=GENESIS, replica_id=0, sync_policy=policy)
        assert s.db.execute("PRAGMA synchronous").fetchone()[0] == level
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        s.close()
    with pytest.raises(ValueError):
        Store(tmp_path / "x", genesis=GENESIS, replica_id=0, sync_policy="always")
    assert sqlite3.sqlite_version_info >= (3, 7, 0)


@pytest.mark.parametrize("policy", ["batch", "checkpoint", "none"])
def test_a_stable_checkpoint_is_stored_under_every_sync_policy(tmp_path, policy):
    s = Store(tmp_path / policy, genesis=GENESIS, replica_id=0, sync_policy=policy)
    s.persist_vote("support", 0, 3, b"a" * 32)
    s.persist_vote("support", 0, 9, b"a" * 32)
    proof = CheckpointProof(4, b"\1" * 32, b"\2" * 32, ((0, b"x" * 64), (2, b"y" * 64)))
    s.set_stable(proof, b"snapshot")
    s.persist_vote("support", 0, 10, b"b" * 32)
    s.commit()
    s.close()
    s = Store(tmp_path / policy, genesis=GENESIS, replica_id=0, sync_policy=policy)
    assert s.stable().proof == proof and s.stable().snapshot == b"snapshot"
    assert s.persist_vote("support", 0, 3, b"c" * 32)       # at or below it: forgotten
    assert not s.persist_vote("support", 0, 9, b"c" * 32)
    assert not s.persist_vote("support", 0, 10, b"c" * 32)
    s.close()


def test_a_damaged_vote_row_or_a_malformed_block_row_is_one_store_error(tmp_path):
    from poe.storage.store import _check
    s = _store(tmp_path)
    b = _chain(1)[0]
    s.append_block(b)
    assert s.persist_vote("support", 0, 3, b"a" * 32)
    s.commit()
    assert list(s.votes()) == [("support", 0, 3, b"a" * 32)]
    s.db.execute("UPDATE votes SET digest=? WHERE seq=3", (b"b" * 32,))   # no new row check
    with pytest.raises(StoreError, match=r"support vote \(0, 3\) fails its row check"):
        check_store(s, None, n=4, nf=3, ts=False)
    s.db.execute("DELETE FROM votes")
    short = b"x" * 31                       # a consistent row check, but not a digest
    s.db.execute("UPDATE blocks SET digest=?, chk=? WHERE seq=1",
                 (short, _check(b"block", 1, 0, short, b.prev, b.hash, None, None, None)))
    with pytest.raises(StoreError, match="block row 1 is malformed") as err:
        check_store(s, None, n=4, nf=3, ts=False)
    assert REPAIR in str(err.value)
    s.close()


def _results(*messages) -> bytes:
    """Stored results: per message (client, [(t, status, value)])."""
    import struct
    out = b""
    for i, (client, ops) in enumerate(messages):
        out += struct.pack("<IIH", client, i, len(ops))
        for t, status, value in ops:
            out += struct.pack("<QBH", t, status, len(value)) + value
    return out


def test_results_follow_their_blocks_through_rollback_keep_and_base(tmp_path):
    s = _store(tmp_path)
    chain = _chain(4)
    for b in chain:
        s.append_block(b, _results((7, [(b.seq * 10, 0, b"v%d" % b.seq)])))
    assert [seq for seq, _, _ in s.results(4)] == [4, 3, 2, 1]          # newest first
    assert [seq for seq, _, _ in s.results(2)] == [2, 1]
    s.truncate_above(3)                                                  # a rollback
    s.append_block(chain[3])                                             # no results now
    assert [seq for seq, _, _ in s.results(9)] == [3, 2, 1]
    assert s.keep_block(3, 5, NOOP_DIGEST, None)                        # view 5 keeps it
    assert next(s.results(3))[:2] == (3, 5)
    assert not s.keep_block(3, 6, b"\1" * 32, None)                     # another block
    assert check_store(s, None, n=4, nf=3, ts=False).ok
    [(client, first, duplicate, body)] = split_results(next(s.results(3))[2])
    assert (client, first, duplicate) == (7, 30, False) and body.endswith(b"v3")
    s.set_base(CheckpointProof(4, b"\0" * 32, chain[3].hash, ()))     # a state transfer
    assert list(s.results(9)) == []


def test_damaged_results_stop_the_store_check(tmp_path):
    s = _store(tmp_path)
    for b in _chain(2):
        s.append_block(b, _results((1, [(1, 0, b"x")])))
    s.db.execute("UPDATE results SET view=9 WHERE seq=2")               # no new row check
    with pytest.raises(StoreError, match="results of block 2 fail their row check"):
        check_store(s, None, n=4, nf=3, ts=False)


@pytest.mark.parametrize("body", [b"\1\0\0\0\0\0\0\0\1", _results((1, [(1, 0, b"xy")]))[:-1],
                                  _results((1, []))])
def test_split_results_rejects_malformed_bytes(body):
    with pytest.raises(ValueError):
        split_results(body)


def test_split_results_marks_all_duplicate_messages():
    body = _results((1, [(5, 3, b""), (6, 3, b"")]), (2, [(9, 3, b""), (10, 0, b"a")]))
    assert [(c, t, d) for c, t, d, _ in split_results(body)] == [(1, 5, True), (2, 9, False)]


def test_vote_batches_are_checked_and_dropped_at_the_stable_checkpoint(tmp_path):
    from poe._core import codec
    from poe._core.digest import batch_digest
    message = codec.pack_client_message(0, [(1, 7, codec.OP_INSERT, b"v")]) + b"s" * 64
    body = codec.Batch.from_messages([message]).body()
    digest = batch_digest(codec.Batch.from_body(body))
    s = _store(tmp_path)
    assert list(s.vote_batches()) == []
    s.persist_vote_batch(5, b"\7" * 32, body)                          # the wrong digest
    with pytest.raises(StoreError, match="vote batch 5: does not hash to its digest"):
        check_store(s, None, n=4, nf=3, ts=False)
    s.db.execute("DELETE FROM vote_batches")
    s.persist_vote_batch(5, digest, body)
    s.persist_vote_batch(9, digest, body)
    report = check_store(s, None, n=4, nf=3, ts=False)
    assert set(report.vote_batches) == {(5, digest), (9, digest)}
    s.db.execute("UPDATE vote_batches SET seq=6 WHERE seq=5")           # no new row check
    with pytest.raises(StoreError, match="fails its row check"):
        check_store(s, None, n=4, nf=3, ts=False)
    s.db.execute("DELETE FROM vote_batches WHERE seq=6")
    s.set_stable(CheckpointProof(9, b"\0" * 32, b"\0" * 32, ()), b"")
    assert list(s.vote_batches()) == []


def test_a_transfer_base_is_the_actions_own_proof_whatever_the_turn_did_next(tmp_path):
    """LedgerWriter writes a state transfer's base from the Transferred action's proof, not
    from the replica's stable checkpoint at write time: the same handler call may have
    replayed blocks above the transfer and made a later checkpoint stable before the writer
    sees the action, and then the base (and the chain's start) would be missing (the ledger
    gap of swarm seed 88; mutant base-from-replica)."""
    from collections import Counter
    from types import SimpleNamespace

    from poe.protocol.actions import Transferred
    from poe.storage.writer import LedgerWriter

    s = _store(tmp_path)
    chain = _chain(8)
    transferred = CheckpointProof(4, b"\1" * 32, chain[3].hash, ())
    later = CheckpointProof(8, b"\2" * 32, chain[7].hash, ())
    # the replica has moved on to checkpoint 8 within the same handler call
    replica = SimpleNamespace(checkpoints=SimpleNamespace(stable=later))
    counters: Counter = Counter()
    writer = LedgerWriter(s, replica, counters)
    writer.write_turn([Transferred(4, transferred.state_digest, transferred.chain_digest,
                                   transferred)])
    assert counters["base-not-stored"] == 0
    assert s.base() == transferred
