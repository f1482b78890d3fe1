"""Loading and checking key files: the public cluster file and per-party secret files.

``cluster.toml`` (public) lists the cluster id, ``n``, ``f``, the replicas (id, host, ports,
Ed25519 and BLS share public keys with proofs of possession), the BLS group public key and
the clients. ``replica-<i>.secret.toml`` / ``client-<j>.secret.toml`` (mode 0600) hold one
party's private keys and its pairwise MAC secrets. Formats: docs/crypto.md.

Everything read here is treated as hostile: every problem (unreadable, malformed or
truncated TOML, a missing, unknown or mistyped field, a key that does not match the cluster
file, a failed proof of possession, share keys off the dealer's polynomial, a secret file
readable by group or others, an unknown id) raises exactly one :class:`KeyFileError` naming
the file and the field.

Must never: quote a secret value in an error, chain an exception that could (``from None``),
or return a secret-holding object whose ``repr`` shows a key.
"""
from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import Party, Role, client, faults_tolerated, replica
from .bls import G1_SIZE, POP_SIZE, SCALAR_SIZE, backend_ops, select_backend
from .ed25519 import PUBLIC_KEY_SIZE, SEED_SIZE, public_key_of
from .errors import KeyFileError
from .mac import MAC_KEY_SIZE
from .shamir import R, compile_msm, delta, lagrange_delta

__all__ = [
    "CLIENTS_MAX",
    "CLUSTER_FORMAT",
    "FILE_BYTES_MAX",
    "REGENERATE",
    "REPLICAS_MAX",
    "SECRET_FORMAT",
    "ClientInfo",
    "Cluster",
    "ReplicaInfo",
    "SecretKeys",
    "load_cluster",
    "load_secret",
]

CLUSTER_FORMAT = "poe-cluster/1"
SECRET_FORMAT = "poe-secret/1"
REPLICAS_MAX = 128          # Δ-trick combine cost grows ~n²·log n; see docs/crypto.md
CLIENTS_MAX = 65_536
FILE_BYTES_MAX = 64 << 20
CLUSTER_ID_HEX = 16
REGENERATE = "regenerate keys with `poe keygen`"

_HEX = re.compile(r"[0-9a-fA-F]*")
_HOST = re.compile(r"[A-Za-z0-9.:\-]{1,253}")
_TOML_POSITION = re.compile(r"\((at [^()]*)\)\s*$")


@dataclass(frozen=True, slots=True)
class ReplicaInfo:
    """Public data of one replica, as in cluster.toml."""

    id: int
    host: str
    replica_port: int
    client_port: int
    ed25519_public_key: bytes
    bls_share_public_key: bytes
    bls_pop: bytes


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Public data of one client, as in cluster.toml."""

    id: int
    ed25519_public_key: bytes


@dataclass(frozen=True, slots=True)
class Cluster:
    """A checked cluster file. ``path`` is where it was loaded from (for messages)."""

    cluster_id: str
    n: int
    f: int
    bls_group_public_key: bytes
    replicas: tuple[ReplicaInfo, ...]
    clients: tuple[ClientInfo, ...]
    path: str = "cluster.toml"

    @property
    def nf(self) -> int:
        """Quorum size ``n - f``."""
        return self.n - self.f

    def parties(self) -> list[Party]:
        """Every replica, then every client."""
        return [replica(r.id) for r in self.replicas] + [client(c.id) for c in self.clients]

    def ed25519_public_keys(self) -> dict[Party, bytes]:
        """Raw Ed25519 public key of every party."""
        keys = {replica(r.id): r.ed25519_public_key for r in self.replicas}
        keys.update({client(c.id): c.ed25519_public_key for c in self.clients})
        return keys

    def share_public_keys(self) -> list[bytes]:
        """BLS share public key of replica ``0..n-1``."""
        return [r.bls_share_public_key for r in self.replicas]


class SecretKeys:
    """One party's private keys from its secret file. ``repr`` never shows them."""

    __slots__ = ("_bls_share", "_ed25519_seed", "_mac", "cluster_id", "party", "path")

    def __init__(self, party: Party, cluster_id: str, path: str, ed25519_seed: bytes,
                 bls_share: bytes | None, mac_pair_keys: dict[Party, bytes]) -> None:
        self.party = party
        self.cluster_id = cluster_id
        self.path = path
        self._ed25519_seed = ed25519_seed
        self._bls_share = bls_share
        self._mac = dict(mac_pair_keys)

    def ed25519_seed(self) -> bytes:
        """The 32-byte Ed25519 private seed."""
        return self._ed25519_seed

    def bls_share(self) -> bytes | None:
        """Replica only: the 32-byte big-endian BLS key share ``k_i``; ``None`` for clients."""
        return self._bls_share

    def mac_pair_keys(self) -> dict[Party, bytes]:
        """Pair secret shared with each peer (a copy)."""
        return dict(self._mac)

    def __repr__(self) -> str:
        return f"SecretKeys(party={self.party}, path={self.path!r}, keys=<hidden>)"

    __str__ = __repr__


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------

def _kind(value: object) -> str:
    return {bool: "a boolean", int: "an integer", str: "a string", float: "a float",
            dict: "a table", list: "an array"}.get(type(value), type(value).__name__)


class _Table:
    """Typed access to one TOML table; every error names file and dotted field."""

    def __init__(self, path: str, table: dict[str, Any], prefix: str) -> None:
        self.path, self.table, self.prefix = path, table, prefix
        self.used: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def error(self, key: str | None, problem: str) -> KeyFileError:
        return KeyFileError(self.path, self.name(key) if key is not None else
                            (self.prefix.rstrip(".") or None), problem)

    def get(self, key: str, kind: type) -> Any:
        self.used.add(key)
        if key not in self.table:
            raise self.error(key, "missing (the file may be truncated or hand-edited); "
                             + REGENERATE)
        value = self.table[key]
        if type(value) is not kind:
            raise self.error(key, f"expected {_kind(kind())}, found {_kind(value)}")
        return value

    def integer(self, key: str, low: int, high: int) -> int:
        value = self.get(key, int)
        if not low <= value <= high:
            raise self.error(key, f"must be in {low}..{high}, found {value}")
        return value

    def text(self, key: str, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        value = self.get(key, str)
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(key, f"not {what}")
        return value

    def hexbytes(self, key: str, size: int) -> bytes:
        value = self.get(key, str)
        if not _HEX.fullmatch(value):
            raise self.error(key, "not hexadecimal")
        if len(value) != 2 * size:
            raise self.error(key, f"expected {2 * size} hex characters ({size} bytes), found "
                             f"{len(value)} (truncated or corrupted file?); " + REGENERATE)
        return bytes.fromhex(value)

    def subtable(self, key: str) -> _Table:
        return _Table(self.path, self.get(key, dict), self.name(key) + ".")

    def array(self, key: str) -> list[Any]:
        return self.get(key, list)

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown field (typo, or a file for another version "
                             "of poe)")


def _read_toml(path: Path, secret: bool) -> dict[str, Any]:
    where = str(path)
    try:
        if secret:
            fd = os.open(path, os.O_RDONLY)
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    raise KeyFileError(where, None, "not a regular file")
                if info.st_mode & 0o077:
                    raise KeyFileError(
                        where, None,
                        f"permissions {stat.S_IMODE(info.st_mode):04o} let group or others read "
                        f"this secret key file; run `chmod 600 {where}` (and consider the keys "
                        "exposed if others could read them)")
                data = _read_limited(fd, where)
            finally:
                os.close(fd)
        else:
            with open(path, "rb") as handle:
                data = _read_limited(handle.fileno(), where)
    except KeyFileError:
        raise
    except OSError as exc:
        raise KeyFileError(where, None, f"cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFileError(where, None, "not UTF-8 text (corrupted?); " + REGENERATE) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        if secret:  # tomllib may quote a character of the file: keep only the position
            found = _TOML_POSITION.search(message)
            message = f"syntax error ({found.group(1)})" if found else "syntax error"
        raise KeyFileError(where, None, f"not valid TOML (truncated or corrupted?): {message}; "
                           + REGENERATE) from None


def _read_limited(fd: int, where: str) -> bytes:
    chunks = []
    total = 0
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > FILE_BYTES_MAX:
            raise KeyFileError(where, None, f"larger than {FILE_BYTES_MAX} bytes")
        chunks.append(chunk)


def _check_format(table: _Table, expected: str) -> None:
    value = table.get("format", str)
    if value != expected:
        raise table.error("format", f"expected {expected!r}, found {value!r}")


# ---------------------------------------------------------------------------------------------
# cluster file
# ---------------------------------------------------------------------------------------------

def load_cluster(path: str | os.PathLike[str]) -> Cluster:
    """Load and fully check a cluster file (structure, keys, PoPs, share-key polynomial),
    with the selected BLS backend (:func:`poe.crypto.bls.select_backend`)."""
    ops = backend_ops(select_backend())
    where = str(path)
    top = _Table(where, _read_toml(Path(path), secret=False), "")
    _check_format(top, CLUSTER_FORMAT)
    cluster_id = top.text("cluster_id", re.compile(f"[0-9a-f]{{{CLUSTER_ID_HEX}}}"),
                          f"{CLUSTER_ID_HEX} lowercase hex characters")
    n = top.integer("n", 1, REPLICAS_MAX)
    f = top.integer("f", 0, n)
    if f != faults_tolerated(n):
        raise top.error("f", f"is {f} but n = {n} requires f = (n-1)//3 = {faults_tolerated(n)}")
    clients_count = top.integer("clients", 0, CLIENTS_MAX)
    group_raw = top.hexbytes("bls_group_public_key", G1_SIZE)

    replica_tables = top.array("replica")
    if len(replica_tables) != n:
        raise top.error("replica", f"lists {len(replica_tables)} replicas but n = {n} (the file "
                        "may be truncated); " + REGENERATE)
    client_tables = top.array("client") if clients_count or "client" in top.table else []
    if len(client_tables) != clients_count:
        raise top.error("client", f"lists {len(client_tables)} clients but clients = "
                        f"{clients_count} (the file may be truncated); " + REGENERATE)
    top.finish()

    replicas = tuple(_replica_info(where, index, item) for index, item in
                     enumerate(replica_tables))
    clients = tuple(_client_info(where, index, item) for index, item in
                    enumerate(client_tables))
    _check_unique(where, replicas, clients)

    group = ops.decode_g1(group_raw)
    if group is None:
        raise top.error("bls_group_public_key", "not a valid BLS12-381 G1 point; " + REGENERATE)
    share_keys = []
    for info in replicas:
        point = ops.decode_g1(info.bls_share_public_key)
        if point is None:
            raise KeyFileError(where, f"replica[{info.id}].bls_share_public_key",
                               "not a valid BLS12-381 G1 point; " + REGENERATE)
        pop = ops.decode_g2(info.bls_pop)
        if pop is None or not ops.pop_verify(point, pop):
            raise KeyFileError(where, f"replica[{info.id}].bls_pop",
                               "proof of possession does not verify for bls_share_public_key; "
                               + REGENERATE)
        share_keys.append(point)
    _check_polynomial(ops, where, group, share_keys, n, n - f)
    return Cluster(cluster_id=cluster_id, n=n, f=f, bls_group_public_key=group_raw,
                   replicas=replicas, clients=clients, path=where)


def _item(where: str, kind: str, index: int, item: object) -> _Table:
    if type(item) is not dict:
        raise KeyFileError(where, f"{kind}[{index}]", f"expected a table, found {_kind(item)}")
    table = _Table(where, item, f"{kind}[{index}].")
    value = table.get("id", int)
    if value != index:
        raise table.error("id", f"expected {index} ({kind} ids are 0, 1, 2, ... in file order), "
                          f"found {value}")
    return table


def _replica_info(where: str, index: int, item: object) -> ReplicaInfo:
    table = _item(where, "replica", index, item)
    info = ReplicaInfo(
        id=index,
        host=table.text("host", _HOST, "a host name or IP address"),
        replica_port=table.integer("replica_port", 1, 65535),
        client_port=table.integer("client_port", 1, 65535),
        ed25519_public_key=table.hexbytes("ed25519_public_key", PUBLIC_KEY_SIZE),
        bls_share_public_key=table.hexbytes("bls_share_public_key", G1_SIZE),
        bls_pop=table.hexbytes("bls_pop", POP_SIZE))
    table.finish()
    return info


def _client_info(where: str, index: int, item: object) -> ClientInfo:
    table = _item(where, "client", index, item)
    info = ClientInfo(id=index,
                      ed25519_public_key=table.hexbytes("ed25519_public_key", PUBLIC_KEY_SIZE))
    table.finish()
    return info


def _check_unique(where: str, replicas: tuple[ReplicaInfo, ...],
                  clients: tuple[ClientInfo, ...]) -> None:
    endpoints: dict[tuple[str, int], str] = {}
    keys: dict[bytes, str] = {}
    shares: dict[bytes, str] = {}
    for info in replicas:
        for port_field in ("replica_port", "client_port"):
            endpoint = (info.host, getattr(info, port_field))
            name = f"replica[{info.id}].{port_field}"
            if endpoint in endpoints:
                raise KeyFileError(where, name, f"{endpoint[0]}:{endpoint[1]} is also used by "
                                   f"{endpoints[endpoint]}")
            endpoints[endpoint] = name
        for table, raw, name in ((keys, info.ed25519_public_key, "ed25519_public_key"),
                                 (shares, info.bls_share_public_key, "bls_share_public_key")):
            if raw in table:
                raise KeyFileError(where, f"replica[{info.id}].{name}",
                                   f"same key as {table[raw]}; " + REGENERATE)
            table[raw] = f"replica {info.id}"
    for cinfo in clients:
        if cinfo.ed25519_public_key in keys:
            raise KeyFileError(where, f"client[{cinfo.id}].ed25519_public_key",
                               f"same key as {keys[cinfo.ed25519_public_key]}; " + REGENERATE)
        keys[cinfo.ed25519_public_key] = f"client {cinfo.id}"


def _combination_matches(ops, points: list, xs: list[int], n: int, at: int,
                         target) -> bool:
    """Σ c_k·points[k] (Δ-scaled Lagrange at ``at``) equals ``target`` (at 0) or
    ``Δ·target`` (at a replica's point); G1 points of backend ``ops``."""
    scalars = lagrange_delta(xs, n, at)
    if at == 0:
        return ops.run_msm(compile_msm(scalars), points) == target
    total = ops.run_msm(compile_msm(scalars + [-delta(n)]), points + [target])
    return total == ops.G1_IDENTITY


def _check_polynomial(ops, where: str, group, keys: list, n: int, threshold: int) -> None:
    """Every share public key lies on the dealer's polynomial, whose value at 0 is the group
    key: otherwise shares would verify one by one yet never combine."""
    base = list(range(threshold))
    xs = [i + 1 for i in base]
    if not _combination_matches(ops, [keys[i] for i in base], xs, n, 0, group):
        culprit = _find_bad_base_key(ops, group, keys, n, threshold)
        if culprit is None:
            raise KeyFileError(where, "bls_group_public_key",
                               "does not match the replicas' bls_share_public_key values; "
                               + REGENERATE)
        raise KeyFileError(where, f"replica[{culprit}].bls_share_public_key",
                           "not on the same sharing polynomial as bls_group_public_key and the "
                           "other replicas' share keys; " + REGENERATE)
    for j in range(threshold, n):
        if not _combination_matches(ops, [keys[i] for i in base], xs, n, j + 1, keys[j]):
            raise KeyFileError(where, f"replica[{j}].bls_share_public_key",
                               "not on the same sharing polynomial as bls_group_public_key and "
                               "the other replicas' share keys; " + REGENERATE)


def _find_bad_base_key(ops, group, keys: list, n: int, threshold: int) -> int | None:
    """With one bad key among replicas ``0..t-1``: swap each out for replica ``t``."""
    if threshold >= n:
        return None
    for suspect in range(threshold):
        members = [i for i in range(threshold) if i != suspect] + [threshold]
        if _combination_matches(ops, [keys[i] for i in members], [i + 1 for i in members], n,
                                0, group):
            return suspect
    return None


# ---------------------------------------------------------------------------------------------
# secret files
# ---------------------------------------------------------------------------------------------

def load_secret(path: str | os.PathLike[str], cluster: Cluster) -> SecretKeys:
    """Load one party's secret file and check it against the (already loaded) cluster."""
    where = str(path)
    top = _Table(where, _read_toml(Path(path), secret=True), "")
    _check_format(top, SECRET_FORMAT)
    cluster_id = top.get("cluster_id", str)
    if cluster_id != cluster.cluster_id:
        raise top.error("cluster_id", f"belongs to cluster {cluster_id!r} but {cluster.path} is "
                        f"cluster {cluster.cluster_id!r}; use the secret files generated with "
                        "that cluster file")
    role_name = top.get("role", str)
    if role_name not in ("replica", "client"):
        raise top.error("role", f"expected 'replica' or 'client', found {role_name!r}")
    role = Role(role_name)
    count = cluster.n if role is Role.REPLICA else len(cluster.clients)
    party_id = top.get("id", int)
    if not 0 <= party_id < count:
        raise top.error("id", f"unknown {role_name} id {party_id}: {cluster.path} has "
                        f"{count} {role_name}s (ids 0..{count - 1})")
    party = Party(role, party_id)

    seed = top.hexbytes("ed25519_secret_key", SEED_SIZE)
    expected = (cluster.replicas[party_id].ed25519_public_key if role is Role.REPLICA
                else cluster.clients[party_id].ed25519_public_key)
    if public_key_of(seed) != expected:
        raise _mismatch(top, "ed25519_secret_key", party, cluster)

    share = None
    if role is Role.REPLICA:
        share = top.hexbytes("bls_share", SCALAR_SIZE)
        scalar = int.from_bytes(share, "big")
        if not 0 < scalar < R:
            raise top.error("bls_share", "not a non-zero scalar below the BLS12-381 group order; "
                            + REGENERATE)
        ops = backend_ops(select_backend())
        public = ops.public_key(ops.secret_key(share))
        if public != cluster.replicas[party_id].bls_share_public_key:
            raise _mismatch(top, "bls_share", party, cluster)

    mac_keys = _mac_keys(top, party, cluster)
    top.finish()
    return SecretKeys(party, cluster_id, where, seed, share, mac_keys)


def check_owner(secret: SecretKeys, cluster: Cluster, role: str, party_id: int) -> None:
    """The secret file loaded for ``role`` ``party_id`` must be that party's: the public key
    derived from its Ed25519 secret must be the cluster file's entry for ``party_id``
    (a copied or renamed secret file of another party is refused, KeyFileError)."""
    entries = cluster.replicas if role == "replica" else cluster.clients
    expected = entries[party_id].ed25519_public_key
    if public_key_of(secret.ed25519_seed()) == expected:
        return
    owner = next((f"{role} {e.id}" for e in entries
                  if e.ed25519_public_key == public_key_of(secret.ed25519_seed())),
                 str(secret.party))
    raise KeyFileError(secret.path, None,
                       f"holds the secret keys of {owner}, not of {role} {party_id}: its public "
                       f"key differs from {cluster.path}'s entry for {role} {party_id}; give "
                       f"{role} {party_id} its own {role}-{party_id}.secret.toml")


def _mismatch(top: _Table, field: str, party: Party, cluster: Cluster) -> KeyFileError:
    return top.error(field, f"does not match {cluster.path} public key for {party} — "
                     + REGENERATE)


def _mac_keys(top: _Table, party: Party, cluster: Cluster) -> dict[Party, bytes]:
    macs = top.subtable("mac_keys")
    peers: list[tuple[str, Callable[[int], Party], range]] = [
        ("replica", replica, range(cluster.n))]
    if party.role is Role.REPLICA:
        peers.append(("client", client, range(len(cluster.clients))))
    keys: dict[Party, bytes] = {}
    for kind, make, ids in peers:
        table = macs.subtable(kind)
        for peer_id in ids:
            peer = make(peer_id)
            if peer != party:
                keys[peer] = table.hexbytes(str(peer_id), MAC_KEY_SIZE)
        table.finish()
    macs.finish()
    return keys
