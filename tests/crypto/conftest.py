"""Shared key material for the crypto tests: generated once per session (BLS keygen and
cluster loading are the slow part), written to a temporary directory, loaded back."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from poe.crypto import Cluster, SecretKeys, load_cluster, load_secret, load_suite
from poe.crypto.base import client, replica
from poe.crypto.dealer import deal_cluster, secret_file_name, write_keys


@dataclass
class KeySet:
    directory: Path
    cluster: Cluster
    secrets: dict  # Party -> SecretKeys
    suites: dict   # Party -> CryptoSuite (variant "ts", threshold "bls")

    def replica_secret(self, i: int) -> SecretKeys:
        return self.secrets[replica(i)]

    def file(self, name: str) -> Path:
        return self.directory / name


def make_keyset(directory: Path, n: int, clients: int) -> KeySet:
    write_keys(directory, deal_cluster(n, clients))
    cluster = load_cluster(directory / "cluster.toml")
    parties = [replica(i) for i in range(n)] + [client(j) for j in range(clients)]
    secrets = {p: load_secret(directory / secret_file_name(p), cluster) for p in parties}
    suites = {p: load_suite(cluster, secrets[p]) for p in parties}
    return KeySet(directory, cluster, secrets, suites)


@pytest.fixture(scope="session")
def keys4(tmp_path_factory: pytest.TempPathFactory) -> KeySet:
    """n = 4 (f = 1, nf = 3) and 2 clients."""
    return make_keyset(tmp_path_factory.mktemp("keys4"), 4, 2)


@pytest.fixture(scope="session")
def keys32(tmp_path_factory: pytest.TempPathFactory) -> KeySet:
    """n = 32 (f = 10, nf = 22) and 1 client."""
    return make_keyset(tmp_path_factory.mktemp("keys32"), 32, 1)
