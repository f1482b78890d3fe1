"""Backend selection: suites per variant, the fake backend's guard, determinism and
detection behaviour, and the `poe keygen` command."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest

from poe.cli.main import main
from poe.crypto import (
    BACKENDS,
    CryptoError,
    InsecureBackendError,
    client,
    load_backend,
    load_cluster,
    load_suite,
    replica,
    request_statement,
    support_statement,
)
from poe.crypto.bls import BlsMultiVerifier, BlsThresholdVerifier
from poe.crypto.fake import FakeCrypto

STATEMENT = support_statement(1, 1, bytes(32))


def test_ts_suite_of_a_replica_has_everything(keys4) -> None:
    suite = load_suite(keys4.cluster, keys4.replica_secret(1))
    assert suite.party == replica(1) and not suite.insecure
    assert suite.threshold_signer.replica == 1
    assert isinstance(suite.threshold, BlsThresholdVerifier)
    assert suite.macs.party == replica(1) and suite.signer.party == replica(1)
    share = suite.threshold_signer.share_sign(STATEMENT)
    assert suite.threshold.verify_share(1, STATEMENT, share)


def test_mac_variant_has_no_threshold(keys4) -> None:
    suite = load_suite(keys4.cluster, keys4.replica_secret(1), variant="mac")
    assert suite.threshold is None and suite.threshold_signer is None
    assert suite.macs is not None and suite.signer is not None


def test_multi_threshold_and_client_suites(keys4) -> None:
    suite = load_suite(keys4.cluster, keys4.replica_secret(0), threshold="bls-multi")
    assert isinstance(suite.threshold, BlsMultiVerifier)
    client_suite = load_suite(keys4.cluster, keys4.secrets[client(0)])
    assert client_suite.threshold_signer is None and client_suite.party == client(0)
    observer = load_suite(keys4.cluster, None)
    assert observer.macs is None and observer.signer is None and observer.verifier is not None


@pytest.mark.parametrize("call", [
    lambda k: load_backend("rsa", k.cluster),
    lambda k: load_backend("mac", k.cluster),
    lambda k: load_suite(k.cluster, None, variant="pbft"),
    lambda k: load_suite(k.cluster, None, threshold="frost"),
])
def test_bad_choices_are_clear_errors(keys4, call) -> None:
    with pytest.raises(CryptoError):
        call(keys4)


@pytest.mark.parametrize("purpose", ["replica", "client", "bench", "", "SIM"])
def test_fake_is_refused_outside_sim_and_test(keys4, purpose: str) -> None:
    with pytest.raises(InsecureBackendError, match="insecure"):
        load_backend("fake", keys4.cluster, keys4.replica_secret(0), purpose=purpose)
    with pytest.raises(InsecureBackendError):
        load_suite(keys4.cluster, keys4.replica_secret(0), fake=True, purpose=purpose)
    with pytest.raises(InsecureBackendError):
        FakeCrypto(4, 1, seed=1, purpose=purpose)


def test_fake_allowed_for_sim_test_and_insecure_bench(keys4) -> None:
    for options in ({"purpose": "sim"}, {"purpose": "test"},
                    {"purpose": "replica", "insecure_bench": True}):
        suite = load_backend("fake", keys4.cluster, keys4.replica_secret(2), **options)
        assert suite.insecure and suite.threshold_signer.replica == 2
    mac_only = load_suite(keys4.cluster, keys4.replica_secret(2), variant="mac", fake=True,
                          purpose="sim")
    assert mac_only.threshold is None and mac_only.insecure


def test_fake_is_deterministic_and_seed_dependent() -> None:
    a = FakeCrypto(4, 1, seed=7, purpose="sim").suite(replica(1))
    b = FakeCrypto(4, 1, seed=7, purpose="sim").suite(replica(1))
    c = FakeCrypto(4, 1, seed=8, purpose="sim").suite(replica(1))
    for x, y, same in ((a, b, True), (a, c, False)):
        assert (x.threshold_signer.share_sign(STATEMENT)
                == y.threshold_signer.share_sign(STATEMENT)) is same
        assert (x.signer.sign(b"m") == y.signer.sign(b"m")) is same
        assert (x.macs.mac(replica(0), b"m") == y.macs.mac(replica(0), b"m")) is same


def test_fake_sizes_match_the_real_backends() -> None:
    fake = FakeCrypto(4, 1, seed=1, purpose="test")
    suite = fake.suite(replica(0))
    assert len(suite.threshold_signer.share_sign(STATEMENT)) == 96
    assert len(suite.signer.sign(b"x")) == 64
    assert len(suite.macs.mac(client(0), b"x")) == 32
    shares = {i: fake.suite(replica(i)).threshold_signer.share_sign(STATEMENT)
              for i in range(3)}
    cert = suite.threshold.combine(shares, STATEMENT)
    assert len(cert.signature) == 96 and cert.bitmap == b"\x07"


def test_fake_signatures_and_macs_are_party_bound() -> None:
    fake = FakeCrypto(4, 2, seed=3, purpose="sim")
    c0, c1, r0 = fake.suite(client(0)), fake.suite(client(1)), fake.suite(replica(0))
    message = request_statement(b"op")
    signature = c0.signer.sign(message)
    assert r0.verifier.verify(client(0), message, signature)
    assert r0.verifier.verify(fake.public_key(client(0)), message, signature)
    assert not r0.verifier.verify(client(1), message, signature)
    assert not r0.verifier.verify(client(0), message + b"x", signature)
    tag = c1.macs.mac(replica(0), b"frame")
    assert r0.macs.verify(client(1), b"frame", tag)
    assert not r0.macs.verify(client(0), b"frame", tag)
    with pytest.raises(ValueError, match="not part of this fake cluster"):
        fake.suite(client(5))


def test_backends_tuple_lists_every_kind() -> None:
    assert BACKENDS == ("bls", "bls-multi", "mac", "ed25519", "fake")


# --- poe keygen -------------------------------------------------------------------------------

def test_keygen_command(tmp_path: Path, capsys) -> None:
    out = tmp_path / "keys"
    assert main(["keygen", "--replicas", "7", "--clients", "3", "--out", str(out),
                 "--base-port", "9000", "--host", "10.0.0.1"]) == 0
    assert "n=7, f=2, nf=5" in capsys.readouterr().out
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    cluster = load_cluster(out / "cluster.toml")
    assert cluster.replicas[6].replica_port == 9012 and cluster.replicas[6].host == "10.0.0.1"
    assert len(list(out.glob("*.secret.toml"))) == 10
    # refuses to overwrite, exit status 2 and one line on stderr
    assert main(["keygen", "--replicas", "7", "--clients", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and "--force" in err
    assert main(["keygen", "--replicas", "4", "--clients", "0", "--out", str(out),
                 "--force"]) == 0
    assert load_cluster(out / "cluster.toml").n == 4


@pytest.mark.parametrize("args,message", [
    (["--replicas", "0", "--clients", "1"], "--replicas must be in 1..128"),
    (["--replicas", "4", "--clients", "-2"], "--clients must be in"),
    (["--replicas", "4", "--clients", "1", "--host", "a;b"], "--host"),
    (["--replicas", "4", "--clients", "1", "--base-port", "65530"], "--base-port"),
])
def test_keygen_bad_arguments(tmp_path: Path, capsys, args, message) -> None:
    assert main(["keygen", *args, "--out", str(tmp_path / "k")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "k").exists()
