"""Store corruption (issue 13, class 5; PROTOCOL.md §4.11, last paragraph; docs/storage.md,
"Store corruption"): a real store, written by a replica runtime driven by authenticated
frames of real peers, is copied as a kill -9 leaves it (``ledger.db`` + ``ledger.db-wal`` +
``votes.hwm``), then one byte of its write-ahead log is flipped. SQLite then opens the
database without the transactions from the flipped frame on -- silently, and with the votes
they held. The replica must refuse to start, naming the file and the safe repair; after
``poe ledger quarantine`` it starts empty, sends no vote until a state transfer carries its
stable checkpoint past every position it may have voted on, and then votes again.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from poe._core import codec
from poe.cli.main import main as poe_main
from poe.config import load_config
from poe.crypto import load_secret, load_suite
from poe.crypto.dealer import deal_cluster, write_keys
from poe.crypto.statements import request_statement
from poe.protocol.actions import Broadcast, Persist, Send
from poe.runtime.replica import ReplicaRuntime
from poe.storage.store import Store, StoreError

PERIOD, WINDOW = 4, 8
ME = 1                                       # the durable replica (a backup in view 0)
VOTES = {codec.SUPPORT, codec.PROPOSE, codec.COMMIT, codec.CHECKPOINT, codec.VC_REQUEST}
CASES = [(4, "mac", "poe"), (4, "ts", "poe"), (4, "mac", "pbft"), (7, "mac", "poe"),
         (7, "ts", "poe")]


@pytest.fixture(scope="module")
def keydirs(tmp_path_factory):
    dirs = {}
    for n in (4, 7):
        d = tmp_path_factory.mktemp(f"keys{n}")
        write_keys(d, deal_cluster(n, 1))
        dirs[n] = d
    return dirs


def _settings(mode: str, protocol: str) -> list[str]:
    return [f"protocol.mode={mode}", f"protocol.protocol={protocol}", "data.record_count=10",
            f"protocol.checkpoint_period={PERIOD}", f"protocol.window={WINDOW}",
            "protocol.batch_size=1"]


class Cluster:
    """Replica ``ME`` as a durable runtime on ``data``, the others as in-memory replicas;
    ``deliver`` carries every frame (FIFO) until the cluster is quiet."""

    def __init__(self, keys: Path, data: Path, n: int, mode: str, protocol: str) -> None:
        self.keys, self.n, self.mode, self.protocol = keys, n, mode, protocol
        config = load_config(keys / "cluster.toml", _settings(mode, protocol))
        self.peers = {i: ReplicaRuntime(config, i).replica for i in range(n) if i != ME}
        self.now = 100.0
        secret = load_secret(config.secret_path("client", 0), config.cluster)
        self.client = load_suite(config.cluster, secret, variant="mac")
        self.sent: list[tuple[int, int, int, int]] = []   # ME's votes: (kind, seq, stable, floor)
        self.start(data)

    def config(self, data: Path):
        return load_config(self.keys / "cluster.toml",
                           [f"replica.data_dir={data}", *_settings(self.mode, self.protocol)])

    def start(self, data: Path) -> ReplicaRuntime:
        self.rt = ReplicaRuntime(self.config(data), ME)
        self.sent = []
        self.rt._recover()
        return self.rt

    @property
    def me(self):
        return self.rt.replica

    def replica(self, i: int):
        return self.me if i == ME else self.peers[i]

    def message(self, t: int) -> bytes:
        unsigned = codec.pack_client_message(0, [(t, 100 + t, codec.OP_INSERT, b"v%d" % t)])
        return unsigned + self.client.signer.sign(request_statement(unsigned))

    def request(self, t: int) -> None:
        request = codec.encode_request(self.message(t))
        self.deliver(0, self.peers[0].on_message(request, self.now))

    def deliver(self, sender: int, actions) -> None:
        queue = self._route(sender, actions)
        while queue:
            to, frame = queue.pop(0)
            if to == ME:
                actions = self.me.on_message(frame, self.now)
                self.rt._apply(actions)
                self.rt.store.commit()            # the loop turn: durable before it leaves
                self._record(actions)
            else:
                actions = self.peers[to].on_message(frame, self.now)
            self.now += 0.001
            queue += self._route(to, actions)

    def _record(self, actions) -> None:
        r = self.me
        for a in actions:
            if isinstance(a, (Send, Broadcast)):
                kind, _sender, _view, seq = codec.peek(a.data)
                if kind in VOTES:
                    self.sent.append((kind, seq, r.checkpoints.stable.seq,
                                      getattr(r, "abstain_through_seq", 0)))

    def _route(self, sender: int, actions) -> list[tuple[int, bytes]]:
        out = []
        for a in actions:
            if isinstance(a, Send):
                out.append((a.to, a.data))
            elif isinstance(a, Broadcast):
                out += [(i, a.data) for i in range(self.n) if i != sender]
        return out


def _crash_copy(src: Path, dst: Path) -> Path:
    """The files a kill -9 leaves (the open connection never checkpoints its WAL)."""
    dst.mkdir(parents=True)
    for name in ("ledger.db", "ledger.db-wal", "votes.hwm"):
        if (src / name).exists():                 # (votes.hwm: not before issue 13)
            shutil.copy2(src / name, dst / name)
    return dst


def _flip_wal(wal: Path, lost: int) -> int:
    """Flip one byte in the page of the first frame of the ``lost``-th last transaction of
    the WAL's current generation; returns how many committed transactions follow it."""
    data = bytearray(wal.read_bytes())
    page = int.from_bytes(data[8:12], "big")
    salts = bytes(data[16:24])
    size = 24 + page
    commits = [i for i in range((len(data) - 32) // size)
               if data[32 + i * size + 8:32 + i * size + 16] == salts
               and int.from_bytes(data[32 + i * size + 4:32 + i * size + 8], "big")]
    assert len(commits) > lost, "the WAL was checkpointed: the test would prove nothing"
    first = commits[-lost - 1] + 1
    data[32 + first * size + 24 + page // 2] ^= 0x01
    wal.write_bytes(data)
    return lost


def _run_up_to(cluster: Cluster, last: int) -> None:
    for t in range(1, last + 1):
        cluster.request(t)
    assert [cluster.replica(i).k_exec for i in range(cluster.n)] == [last] * cluster.n
    assert cluster.me.checkpoints.stable.seq == PERIOD


def _corrupted(cluster: Cluster, tmp_path: Path) -> Path:
    """ME's store as a kill -9 leaves it, with one byte of its WAL flipped: the last three
    transactions (ME's SUPPORT/COMMIT votes for 6, its execution of 6) are unreadable."""
    crashed = tmp_path / "crashed"
    _crash_copy(cluster.rt.data_dir(), crashed / f"replica-{ME}")
    _flip_wal(crashed / f"replica-{ME}" / "ledger.db-wal", 3)
    return crashed


@pytest.mark.parametrize("n, mode, protocol", CASES)
def test_a_flipped_byte_in_the_wal_stops_the_replica_naming_the_file_and_the_repair(
        keydirs, tmp_path, n, mode, protocol):
    cluster = Cluster(keydirs[n], tmp_path / "data", n, mode, protocol)
    _run_up_to(cluster, 6)
    crashed = _corrupted(cluster, tmp_path)
    db = crashed / f"replica-{ME}" / "ledger.db"
    with pytest.raises(StoreError) as err:
        ReplicaRuntime(cluster.config(crashed), ME)
    line = str(err.value)
    assert line.startswith(f"{db}: holds ") and "\n" not in line
    assert "committed transactions were lost" in line and "ledger.db-wal" in line
    assert "cannot prove what it voted up to sequence 6" in line
    assert f"poe ledger quarantine --data {db.parent}" in line
    assert "delete it" not in line                 # a wiped replica could vote again


def test_the_replica_command_exits_2_with_one_line(keydirs, tmp_path, capsys):
    cluster = Cluster(keydirs[4], tmp_path / "data", 4, "mac", "poe")
    _run_up_to(cluster, 6)
    crashed = _corrupted(cluster, tmp_path)
    status = poe_main(["replica", "--config", str(keydirs[4] / "cluster.toml"), "--id",
                       str(ME), *[a for s in [f"replica.data_dir={crashed}",
                                              *_settings("mac", "poe")] for a in ("--set", s)]])
    assert status == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(crashed / f"replica-{ME}" / "ledger.db") in last
    assert "poe ledger quarantine --data" in last


@pytest.mark.parametrize("n, mode, protocol", CASES)
def test_after_quarantine_it_abstains_until_a_state_transfer_passes_its_votes(
        keydirs, tmp_path, n, mode, protocol, capsys):
    cluster = Cluster(keydirs[n], tmp_path / "data", n, mode, protocol)
    _run_up_to(cluster, 6)
    crashed = _corrupted(cluster, tmp_path)
    here = crashed / f"replica-{ME}"
    assert poe_main(["ledger", "quarantine", "--data", str(here)]) == 0
    assert "floor seq=6" in capsys.readouterr().out
    assert not (here / "ledger.db").exists() and (here / "votes.hwm").exists()
    assert len(list(here.glob("quarantine-*/ledger.db-wal"))) == 1   # kept, not deleted
    cluster.start(crashed)
    r = cluster.me
    assert (r.abstain_through_seq, r.k_exec, cluster.rt.recovery["abstain_through"]) == (6, 0, 6)
    # the cluster goes on; ME sees PROPOSEs inside its window, SUPPORTs, CHECKPOINT 8 from
    # the others, transfers state to 8, and only then takes part again
    for t in range(7, 13):
        cluster.request(t)
    assert r.checkpoints.stable.seq >= 8 and r.k_exec == cluster.peers[0].k_exec == 12
    for kind, seq, stable, floor in cluster.sent:
        assert stable >= floor == 6 and seq > floor, (kind, seq, stable)
    assert r.stats["abstained"] > 0
    before = len(cluster.sent)
    cluster.request(13)
    kinds = {kind for kind, *_ in cluster.sent[before:]}
    assert codec.SUPPORT in kinds and r.k_exec == 13          # it votes again
    if protocol == "pbft":
        assert codec.COMMIT in kinds
    # a restart while still abstaining keeps abstaining: the floor is in every record
    assert Store(here, genesis=cluster.rt.protocol.genesis, replica_id=ME).floor_seq == 6


def test_an_abstaining_replica_does_not_vote_on_a_position_it_may_have_voted_on(
        keydirs, tmp_path):
    # the equivocation the check prevents: ME supported (0, 6, d6) before the crash; a
    # faulty primary now proposes another batch for (0, 6); ME must not support it
    cluster = Cluster(keydirs[4], tmp_path / "data", 4, "mac", "poe")
    _run_up_to(cluster, 6)
    crashed = _corrupted(cluster, tmp_path)
    assert poe_main(["ledger", "quarantine", "--data", str(crashed / f"replica-{ME}")]) == 0
    cluster.start(crashed)
    other = cluster.message(99)
    propose = codec.encode_propose(0, 0, 6, [other])
    macs = cluster.peers[0]._macs
    from poe.crypto.base import replica as replica_party
    out = cluster.me.on_message(codec.seal(propose, macs.mac(replica_party(ME), propose)),
                                cluster.now)
    assert not [a for a in out if isinstance(a, Persist)
                or isinstance(a, (Send, Broadcast)) and codec.peek(a.data)[0] in VOTES]
    assert cluster.me.stats["abstained"] >= 1


def test_a_torn_last_record_is_a_crash_not_a_corruption(keydirs, tmp_path):
    cluster = Cluster(keydirs[4], tmp_path / "data", 4, "mac", "poe")
    _run_up_to(cluster, 6)
    here = _crash_copy(cluster.rt.data_dir(), tmp_path / "crashed" / f"replica-{ME}")
    store = Store(here, genesis=cluster.rt.protocol.genesis, replica_id=ME)
    commits = store.commits
    store.db.close()
    from poe.storage import hwm
    hwm_file = here / "votes.hwm"
    data = bytearray(hwm_file.read_bytes())
    data[(commits % 2) * hwm.SIZE + 5] ^= 0x40     # the newest record, torn in its write
    hwm_file.write_bytes(data)
    # its commit is in the database (written first): nothing was lost, the replica starts
    rt = ReplicaRuntime(cluster.config(tmp_path / "crashed"), ME)
    assert rt.store.commits == commits
    rt.store.close()
    assert hwm.read(hwm_file)[1] is False               # healed: both slots good again


def test_a_missing_mark_or_an_older_database_is_refused(keydirs, tmp_path):
    cluster = Cluster(keydirs[4], tmp_path / "data", 4, "mac", "poe")
    old = _crash_copy(cluster.rt.data_dir(), tmp_path / "old" / f"replica-{ME}")
    _run_up_to(cluster, 6)
    here = _crash_copy(cluster.rt.data_dir(), tmp_path / "crashed" / f"replica-{ME}")
    genesis = cluster.rt.protocol.genesis
    # an older copy of ledger.db put back beside the newer mark (a restored backup)
    shutil.copy2(old / "ledger.db", here / "ledger.db")
    shutil.copy2(old / "ledger.db-wal", here / "ledger.db-wal")
    with pytest.raises(StoreError, match="committed transactions were lost"):
        Store(here, genesis=genesis, replica_id=ME)
    # the mark deleted: the store made commits it cannot vouch for any more
    here = _crash_copy(cluster.rt.data_dir(), tmp_path / "unmarked" / f"replica-{ME}")
    (here / "votes.hwm").unlink()
    with pytest.raises(StoreError, match="votes.hwm is missing"):
        Store(here, genesis=genesis, replica_id=ME)
    # and quarantine then needs the floor from the operator
    assert poe_main(["ledger", "quarantine", "--data", str(here)]) == 2
    assert poe_main(["ledger", "quarantine", "--data", str(here), "--through", "20"]) == 0
    assert Store(here, genesis=genesis, replica_id=ME).floor_seq == 20
