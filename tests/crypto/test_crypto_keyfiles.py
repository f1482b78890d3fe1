"""Key files: keygen output, and one clear KeyFileError (file + field) for every way a cluster
or secret file can be wrong."""
from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

import pytest

from poe.crypto import KeyFileError, load_cluster, load_secret
from poe.crypto.base import client, replica
from poe.crypto.bls import backend_ops, select_backend
from poe.crypto.dealer import deal_cluster, write_keys
from poe.crypto.errors import CryptoError
from poe.crypto.shamir import R


@pytest.fixture
def kdir(keys4, tmp_path: Path) -> Path:
    """A private copy of the n = 4 key files, free to corrupt."""
    for source in keys4.directory.iterdir():
        shutil.copy2(source, tmp_path / source.name)
    return tmp_path


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, count))


def line_of(path: Path, key: str, occurrence: int = 0) -> str:
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith(f"{key} = ")]
    return lines[occurrence]


def cluster_error(path: Path) -> KeyFileError:
    with pytest.raises(KeyFileError) as info:
        load_cluster(path)
    assert path.name in str(info.value)
    return info.value


def secret_error(path: Path, cluster) -> KeyFileError:
    with pytest.raises(KeyFileError) as info:
        load_secret(path, cluster)
    assert path.name in str(info.value)
    return info.value


# --- keygen output ----------------------------------------------------------------------------

def test_keygen_writes_loadable_files_with_private_modes(keys4) -> None:
    names = sorted(p.name for p in keys4.directory.iterdir())
    assert names == sorted(["cluster.toml", "client-0.secret.toml", "client-1.secret.toml"]
                           + [f"replica-{i}.secret.toml" for i in range(4)])
    for path in keys4.directory.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o644 & ~_umask() if path.name == "cluster.toml" else 0o600)
    c = keys4.cluster
    assert (c.n, c.f, c.nf, len(c.clients)) == (4, 1, 3, 2)
    assert [r.replica_port for r in c.replicas] == [7000, 7002, 7004, 7006]
    assert keys4.replica_secret(2).party == replica(2)
    assert keys4.secrets[client(1)].bls_share() is None
    assert set(keys4.secrets[client(1)].mac_pair_keys()) == {replica(i) for i in range(4)}


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_secret_files_are_created_0600_even_with_umask_zero(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_keys(tmp_path, deal_cluster(1, 1))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "replica-0.secret.toml").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "client-0.secret.toml").stat().st_mode) == 0o600


def test_pair_keys_agree_and_are_distinct(keys4) -> None:
    r0 = keys4.replica_secret(0).mac_pair_keys()
    r1 = keys4.replica_secret(1).mac_pair_keys()
    c0 = keys4.secrets[client(0)].mac_pair_keys()
    assert r0[replica(1)] == r1[replica(0)]
    assert r0[client(0)] == c0[replica(0)]
    all_keys = [k for s in keys4.secrets.values() for k in s.mac_pair_keys().values()]
    assert len(set(all_keys)) == len(all_keys) // 2  # each pair secret in exactly two files


def test_refuses_to_overwrite_without_force(kdir: Path) -> None:
    before = (kdir / "cluster.toml").read_bytes()
    with pytest.raises(CryptoError, match="already exists.*--force"):
        write_keys(kdir, deal_cluster(4, 2))
    assert (kdir / "cluster.toml").read_bytes() == before
    os.chmod(kdir / "replica-0.secret.toml", 0o644)
    write_keys(kdir, deal_cluster(4, 2), force=True)
    assert (kdir / "cluster.toml").read_bytes() != before
    assert stat.S_IMODE((kdir / "replica-0.secret.toml").stat().st_mode) == 0o600


@pytest.mark.parametrize("n,clients,host,port", [(0, 1, "h", 7000), (129, 1, "h", 7000),
                                                 (4, -1, "h", 7000), (4, 1, "bad host", 7000),
                                                 (4, 1, 'a"b', 7000), (4, 1, "h", 65530),
                                                 (4, 1, "h", 0)])
def test_deal_rejects_bad_arguments(n, clients, host, port) -> None:
    with pytest.raises(ValueError):
        deal_cluster(n, clients, host=host, base_port=port)


# --- cluster file -----------------------------------------------------------------------------

def test_cluster_missing_file(tmp_path: Path) -> None:
    error = cluster_error(tmp_path / "cluster.toml")
    assert "cannot read" in str(error)


def test_cluster_malformed_toml(kdir: Path) -> None:
    path = kdir / "cluster.toml"
    edit(path, "n = 4", "n = = 4")
    error = cluster_error(path)
    assert "not valid TOML" in str(error) and "line 5" in str(error)


def test_cluster_not_utf8(kdir: Path) -> None:
    path = kdir / "cluster.toml"
    path.write_bytes(path.read_bytes()[:40] + b"\xff\xfe" + path.read_bytes()[40:])
    assert "UTF-8" in str(cluster_error(path))


def test_cluster_truncated_anywhere(kdir: Path) -> None:
    path = kdir / "cluster.toml"
    text = path.read_text()
    end = len(text.rstrip("\n"))
    for cut in range(0, end, 3):
        path.write_text(text[:cut])
        with pytest.raises(KeyFileError):
            load_cluster(path)
    path.write_text(text)
    load_cluster(path)


@pytest.mark.parametrize("key,field", [
    ("format", "format"), ("cluster_id", "cluster_id"), ("n", "n"), ("f", "f"),
    ("clients", "clients"), ("bls_group_public_key", "bls_group_public_key"),
    ("host", "replica[0].host"), ("replica_port", "replica[0].replica_port"),
    ("client_port", "replica[0].client_port"), ("bls_pop", "replica[0].bls_pop"),
    ("bls_share_public_key", "replica[0].bls_share_public_key"),
    ("ed25519_public_key", "replica[0].ed25519_public_key"), ("id", "replica[0].id"),
])
def test_cluster_missing_field(kdir: Path, key: str, field: str) -> None:
    path = kdir / "cluster.toml"
    edit(path, line_of(path, key) + "\n", "")
    error = cluster_error(path)
    assert error.field == field
    assert "missing" in error.problem


@pytest.mark.parametrize("old,new,field,problem", [
    ("n = 4", 'n = "4"', "n", "expected an integer, found a string"),
    ("replica_port = 7002", "replica_port = true", "replica[1].replica_port",
     "expected an integer, found a boolean"),
    ("replica_port = 7002", "replica_port = 70000", "replica[1].replica_port", "1..65535"),
    ("f = 1", "f = 0", "f", "requires f = (n-1)//3 = 1"),
    ("n = 4", "n = 5", "replica", "lists 4 replicas but n = 5"),
    ("clients = 2", "clients = 3", "client", "lists 2 clients"),
    ('format = "poe-cluster/1"', 'format = "poe-cluster/9"', "format", "poe-cluster/1"),
    ("id = 1", "id = 2", "replica[1].id", "expected 1"),
    ('host = "127.0.0.1"', 'host = "a b"', "replica[0].host", "host name"),
    ("client_port = 7001", "client_port = 7000", "replica[0].client_port", "also used by"),
    ("n = 4", "n = 4\nextra = 1", "extra", "unknown field"),
])
def test_cluster_bad_values(kdir: Path, old, new, field, problem) -> None:
    path = kdir / "cluster.toml"
    edit(path, old, new)
    error = cluster_error(path)
    assert error.field == field
    assert problem in error.problem


def _set_hex(path: Path, key: str, value: str, occurrence: int = 0) -> None:
    line = line_of(path, key, occurrence)
    edit(path, line, f'{key} = "{value}"')


@pytest.mark.parametrize("key,value,problem", [
    ("bls_group_public_key", "ab" * 47, "expected 96 hex characters"),
    ("bls_group_public_key", "zz" * 48, "not hexadecimal"),
    ("bls_group_public_key", "00" * 48, "not a valid BLS12-381 G1 point"),
    ("bls_share_public_key", "c0" + "00" * 47, "not a valid BLS12-381 G1 point"),  # identity
    ("ed25519_public_key", "ab" * 33, "expected 64 hex characters"),
])
def test_cluster_bad_keys(kdir: Path, key: str, value: str, problem: str) -> None:
    path = kdir / "cluster.toml"
    _set_hex(path, key, value)
    error = cluster_error(path)
    assert error.field.endswith(key)
    assert problem in error.problem


def test_cluster_failed_proof_of_possession(kdir: Path) -> None:
    path = kdir / "cluster.toml"
    _set_hex(path, "bls_pop", line_of(path, "bls_pop", 1).split('"')[1], occurrence=2)
    error = cluster_error(path)
    assert error.field == "replica[2].bls_pop"
    assert "proof of possession" in error.problem


@pytest.mark.parametrize("victim", [1, 3])
def test_cluster_share_key_off_the_polynomial(kdir: Path, victim: int) -> None:
    """A share key with a valid PoP that is not on the dealer's polynomial is named, both
    inside the base set (replica 1) and outside it (replica 3)."""
    path = kdir / "cluster.toml"
    ops = backend_ops(select_backend())
    rogue = ops.secret_key(bytes(range(32)))          # a valid key nobody dealt
    _set_hex(path, "bls_share_public_key", ops.public_key(rogue).hex(), occurrence=victim)
    _set_hex(path, "bls_pop", ops.pop_prove(rogue).hex(), occurrence=victim)
    error = cluster_error(path)
    assert error.field == f"replica[{victim}].bls_share_public_key"
    assert "polynomial" in error.problem


def test_cluster_group_key_not_matching_the_shares(kdir: Path) -> None:
    path = kdir / "cluster.toml"
    ops = backend_ops(select_backend())
    other = ops.public_key(ops.secret_key((7).to_bytes(32, "big")))
    _set_hex(path, "bls_group_public_key", other.hex())
    error = cluster_error(path)
    assert error.field == "bls_group_public_key"


def test_cluster_duplicate_keys(kdir: Path) -> None:
    path = kdir / "cluster.toml"
    _set_hex(path, "ed25519_public_key", line_of(path, "ed25519_public_key", 0).split('"')[1],
             occurrence=5)
    error = cluster_error(path)
    assert error.field == "client[1].ed25519_public_key"
    assert "same key as replica 0" in error.problem


# --- secret files -----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o601])
def test_secret_readable_by_others_is_refused(kdir: Path, keys4, mode: int) -> None:
    path = kdir / "replica-1.secret.toml"
    os.chmod(path, mode)
    error = secret_error(path, keys4.cluster)
    assert error.field is None
    assert f"{mode:04o}" in error.problem and "chmod 600" in error.problem


def test_secret_owner_only_modes_are_fine(kdir: Path, keys4) -> None:
    path = kdir / "replica-1.secret.toml"
    os.chmod(path, 0o400)
    assert load_secret(path, keys4.cluster).party == replica(1)


def test_secret_missing_file(tmp_path: Path, keys4) -> None:
    assert "cannot read" in str(secret_error(tmp_path / "replica-0.secret.toml",
                                             keys4.cluster))


def test_secret_malformed_toml(kdir: Path, keys4) -> None:
    path = kdir / "replica-2.secret.toml"
    edit(path, 'bls_share = "', 'bls_share = x"')
    error = secret_error(path, keys4.cluster)
    assert "not valid TOML" in error.problem and "line" in error.problem


@pytest.mark.parametrize("name", ["replica-3.secret.toml", "client-1.secret.toml"])
def test_secret_truncated_anywhere(kdir: Path, keys4, name: str) -> None:
    path = kdir / name
    text = path.read_text()
    for cut in range(len(text.rstrip("\n"))):
        path.write_text(text[:cut])
        with pytest.raises(KeyFileError):
            load_secret(path, keys4.cluster)
    path.write_text(text)
    load_secret(path, keys4.cluster)


@pytest.mark.parametrize("key,field", [
    ("format", "format"), ("cluster_id", "cluster_id"), ("role", "role"), ("id", "id"),
    ("ed25519_secret_key", "ed25519_secret_key"), ("bls_share", "bls_share"),
    ("0", "mac_keys.replica.0"),
])
def test_secret_missing_field(kdir: Path, keys4, key: str, field: str) -> None:
    path = kdir / "replica-2.secret.toml"
    edit(path, line_of(path, key) + "\n", "")
    error = secret_error(path, keys4.cluster)
    assert error.field == field
    assert "missing" in error.problem


def test_secret_missing_client_mac_table(kdir: Path, keys4) -> None:
    path = kdir / "replica-2.secret.toml"
    text = path.read_text()
    path.write_text(text[:text.index("[mac_keys.client]")])
    assert secret_error(path, keys4.cluster).field == "mac_keys.client"


@pytest.mark.parametrize("key", ["ed25519_secret_key", "bls_share"])
def test_secret_key_not_matching_cluster(kdir: Path, keys4, key: str) -> None:
    path = kdir / "replica-2.secret.toml"
    other = line_of(kdir / "replica-1.secret.toml", key)
    edit(path, line_of(path, key), other)
    error = secret_error(path, keys4.cluster)
    assert error.field == key
    assert re.search(r"does not match .*cluster\.toml public key for replica 2 — regenerate "
                     r"keys with `poe keygen`", str(error))


@pytest.mark.parametrize("value,problem", [
    ("00" * 32, "non-zero scalar"), (R.to_bytes(32, "big").hex(), "below the BLS12-381"),
    ("ff" * 32, "below"), ("ab" * 31, "expected 64 hex characters"), ("xy" * 32, "hexadecimal"),
])
def test_secret_bad_bls_share(kdir: Path, keys4, value: str, problem: str) -> None:
    path = kdir / "replica-0.secret.toml"
    edit(path, line_of(path, "bls_share"), f'bls_share = "{value}"')
    error = secret_error(path, keys4.cluster)
    assert error.field == "bls_share" and problem in error.problem


@pytest.mark.parametrize("old,new,field,problem", [
    ("id = 1", "id = 4", "id", "unknown replica id 4"),
    ("id = 1", "id = -1", "id", "unknown replica id -1"),
    ("id = 1", 'id = "1"', "id", "expected an integer"),
    ('role = "replica"', 'role = "observer"', "role", "expected 'replica' or 'client'"),
    ('role = "replica"', 'role = "client"', "ed25519_secret_key", "does not match"),
    ('format = "poe-secret/1"', 'format = "poe-secret/2"', "format", "poe-secret/1"),
    ('ed25519_secret_key = "', 'extra = 1\ned25519_secret_key = "', "extra", "unknown field"),
    ("[mac_keys.client]", "[mac_keys.client]\n9 = \"00\"", "mac_keys.client.9",
     "unknown field"),
])
def test_secret_bad_values(kdir: Path, keys4, old, new, field, problem) -> None:
    path = kdir / "replica-1.secret.toml"
    edit(path, old, new)
    error = secret_error(path, keys4.cluster)
    assert error.field == field
    assert problem in error.problem


def test_secret_bad_mac_key_length(kdir: Path, keys4) -> None:
    path = kdir / "client-0.secret.toml"
    line = line_of(path, "3")
    edit(path, line, line[:-3] + '"')
    error = secret_error(path, keys4.cluster)
    assert error.field == "mac_keys.replica.3" and "expected 64 hex" in error.problem


def test_secret_of_another_cluster(tmp_path: Path, keys4) -> None:
    write_keys(tmp_path, deal_cluster(4, 2))
    error = secret_error(tmp_path / "replica-0.secret.toml", keys4.cluster)
    assert error.field == "cluster_id"
    assert "use the secret files generated with that cluster file" in error.problem


def test_secret_key_of_other_keygen_with_same_cluster_id(kdir: Path, keys4) -> None:
    """A key that does not match although the cluster id was copied over."""
    path = kdir / "replica-0.secret.toml"
    fresh = (12345).to_bytes(32, "big")       # a valid scalar, not this replica's share
    edit(path, line_of(path, "bls_share"), f'bls_share = "{fresh.hex()}"')
    assert secret_error(path, keys4.cluster).field == "bls_share"
