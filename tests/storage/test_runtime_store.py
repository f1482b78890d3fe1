"""The runtime's use of the store, without sockets: votes persisted before their frames are
queued, a contradicting vote never queued, blocks appended and truncated, a damaged store
refusing to start (poe/runtime/replica.py, poe/storage)."""
from __future__ import annotations

import sqlite3

import pytest
from poe._core.digest import block_hash

from poe.config import load_config
from poe.crypto.dealer import deal_cluster, write_keys
from poe.protocol.actions import Executed, Persist, RolledBack, Send, SetTimer
from poe.protocol.poe.view_change import NOOP_DIGEST
from poe.runtime.replica import ReplicaRuntime
from poe.storage.store import REPAIR, StoreError


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    write_keys(directory, deal_cluster(4, 1))
    return directory


def _runtime(keys, data) -> ReplicaRuntime:
    config = load_config(keys / "cluster.toml", [f"replica.data_dir={data}",
                                                 "protocol.mode=mac", "data.record_count=10"])
    return ReplicaRuntime(config, 1)


def test_a_contradicting_vote_is_never_queued(keys, tmp_path):
    rt = _runtime(keys, tmp_path)
    rt._apply([Persist(("support", 0, 5, b"a" * 32)), Send(0, b"vote-a")])
    rt.store.commit()
    rt.store.close()
    rt = _runtime(keys, tmp_path)                      # a restart: the vote is durable
    rt._apply([Persist(("support", 0, 5, b"b" * 32)), Send(0, b"vote-b"), Send(2, b"vote-b"),
               SetTimer("tick", 0, 1.0), Send(3, b"after")])
    assert rt._out[0] == [] and rt._out[2] == []
    assert rt._out[3] == [b"after"]                   # only the vote's own frames stay here
    assert rt.counters["equivocation-refused"] == 2
    assert len(rt.timers) == 1
    rt._apply([Persist(("support", 0, 6, b"b" * 32)), Send(0, b"vote-b")])
    rt._apply([Persist(("support", 0, 5, b"b" * 32)), Send(0, b"vote-b")])
    rt._apply([Send(2, b"next-turn")])                # refusal ends with its action list
    assert rt._out[2] == [b"next-turn"]
    rt._apply([Persist(("support", 0, 5, b"a" * 32)), Send(0, b"vote-a")])
    assert rt._out[0] == [b"vote-b", b"vote-a"]       # repeating the same vote is fine
    rt.store.close()


def test_executed_and_rolled_back_shape_the_stored_ledger(keys, tmp_path):
    rt = _runtime(keys, tmp_path)
    genesis = rt.protocol.genesis
    head = genesis
    for k in range(1, 4):
        head = block_hash(k, NOOP_DIGEST, head)
        rt.replica.block_hashes[k] = head
        rt._apply([Executed(k, 0, NOOP_DIGEST, head, 0)])
    rt._apply([RolledBack(2)])
    rt.store.commit()
    assert [b.seq for b in rt.store.blocks()] == [1, 2]
    assert rt.store.head() == (2, rt.replica.block_hashes[2])
    rt.store.close()
    _runtime(keys, tmp_path).store.close()          # the stored chain checks at start-up
    db = sqlite3.connect(tmp_path / "replica-1" / "ledger.db")
    db.execute("UPDATE blocks SET prev=? WHERE seq=2", (b"\1" * 32,))
    db.commit()
    db.close()
    with pytest.raises(StoreError) as err:
        _runtime(keys, tmp_path)
    assert "block 2" in str(err.value) and REPAIR in str(err.value)
