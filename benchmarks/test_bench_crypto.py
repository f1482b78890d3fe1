"""Crypto micro-benchmarks: the per-operation costs behind BENCHMARKS.md's per-batch floor.

Groups (each result records n, sizes and library versions in extra_info):
  share-sign           BLS share on a SUPPORT statement (n = 4, 16, 32; cost independent of n)
  combine              Δ-trick threshold combine of nf shares incl. the one result verify,
                       cached signer-set program (the steady state); n = 4, 16, 32
  combine-multi        aggregate + bitmap alternative (bls-multi), same inputs
  combine-compile      first use of a signer set: Lagrange coefficients + addition chain
  cert-verify          certificate verify (threshold), verified-cache disabled; n = 4, 16, 32
  cert-verify-multi    bls-multi certificate verify, aggregate key cached per bitmap
  share-verify         one share checked alone (the fallback path, naming a bad signer)
  mac-250B / mac-1748B / mac-5400B   keyed BLAKE2b (chosen) vs HMAC-SHA-256, tag and verify
  The BLS groups (share-sign, combine, combine-multi, cert-verify, cert-verify-multi,
  share-verify) run once per installed BLS backend in the same run: blspy (CPython < 3.13)
  and pyblst (blst; the 'fast' extra there, a dependency on 3.13); extra_info "backend" names
  which, outputs are checked identical to the first backend's.
  ed25519-sign / ed25519-verify   a 250 B client message: poe.crypto.ed25519 (PyNaCl,
                       libsodium) against the previous backend (cryptography, OpenSSL) in the
                       same run; extra_info "backend" names which

Run: pytest benchmarks/test_bench_crypto.py --benchmark-columns=min,median,mean,rounds
"""
from __future__ import annotations

import hashlib
import hmac
import importlib.metadata
import os
from pathlib import Path

import pytest

from poe.crypto import load_cluster, load_secret, replica, request_statement, support_statement
from poe.crypto.bls import backend_classes, backend_ops, installed_backends
from poe.crypto.dealer import deal_cluster, secret_file_name, write_keys
from poe.crypto.ed25519 import Ed25519Signer, Ed25519Verifier
from poe.crypto.mac import PairwiseMacKeys
from poe.crypto.shamir import compile_msm, lagrange_delta

SIZES_N = [4, 16, 32]
MAC_SIZES = [250, 1748, 5400]   # SUPPORT/other (250 B), client response, PROPOSE (PROTOCOL §2.10)
STATEMENT = support_statement(3, 1234, hashlib.sha256(b"batch").digest())
# blspy first where installed (the reference), then pyblst
BLS_BACKENDS = sorted(installed_backends(), key=lambda name: name != "blspy")
REFERENCE = BLS_BACKENDS[0]
VERSIONS = {name: importlib.metadata.version(name)
            for name in (*BLS_BACKENDS, "pynacl", "cryptography")}


def info(benchmark, **extra) -> None:
    benchmark.extra_info.update(VERSIONS, cpu_count=os.cpu_count(), **extra)


class Cluster:
    def __init__(self, directory: Path, n: int, backend: str = REFERENCE) -> None:
        if not (directory / "cluster.toml").exists():
            write_keys(directory, deal_cluster(n, 1))
        signer_class, threshold_class, multi_class = backend_classes(backend)
        self.cluster = load_cluster(directory / "cluster.toml")
        self.n, self.nf = n, self.cluster.nf
        self.signers = [
            signer_class(i, load_secret(directory / secret_file_name(replica(i)),
                                        self.cluster).bls_share()) for i in range(n)]
        keys = self.cluster.share_public_keys()
        self.threshold = threshold_class(self.cluster.bls_group_public_key, keys,
                                         verified_cache=0)
        self.multi = multi_class(keys, verified_cache=0)
        self.shares = {i: self.signers[i].share_sign(STATEMENT) for i in range(self.nf)}


@pytest.fixture(scope="module")
def clusters(tmp_path_factory) -> dict[int, Cluster]:
    return {n: Cluster(tmp_path_factory.mktemp(f"bench{n}"), n) for n in SIZES_N}


@pytest.fixture(scope="module")
def bls(clusters, tmp_path_factory) -> dict[tuple[int, str], Cluster]:
    """The same keys (those of ``clusters``) loaded by each BLS backend."""
    out: dict[tuple[int, str], Cluster] = {}
    for n, base in clusters.items():
        directory = Path(base.cluster.path).parent
        for backend in BLS_BACKENDS:
            out[n, backend] = base if backend == REFERENCE else Cluster(directory, n, backend)
            assert out[n, backend].shares == base.shares          # byte-identical shares
    return out


@pytest.mark.parametrize("backend", BLS_BACKENDS)
@pytest.mark.parametrize("n", SIZES_N)
def test_share_sign(benchmark, bls, n, backend) -> None:
    benchmark.group = "share-sign"
    info(benchmark, backend=backend, n=n, statement_bytes=len(STATEMENT))
    share = benchmark(bls[n, backend].signers[0].share_sign, STATEMENT)
    assert len(share) == 96


@pytest.mark.parametrize("backend", BLS_BACKENDS)
@pytest.mark.parametrize("n", SIZES_N)
def test_combine(benchmark, bls, n, backend) -> None:
    c = bls[n, backend]
    benchmark.group = "combine"
    program = c.threshold.program(tuple(range(c.nf)))
    info(benchmark, backend=backend, n=n, nf=c.nf, additions=program.additions, negations=program.negations,
         includes="nf share decodes (blspy unchecked, pyblst checked) + addition chain "
         "+ 1 checked decode (blspy only) + 1 verify")
    cert = benchmark(c.threshold.combine, c.shares, STATEMENT)
    assert c.threshold.verify_cert(cert, STATEMENT)
    assert cert == bls[n, REFERENCE].threshold.combine(c.shares, STATEMENT)   # byte-identical


@pytest.mark.parametrize("n", SIZES_N)
def test_combine_chain_only(benchmark, clusters, n) -> None:
    c = clusters[n]
    benchmark.group = "combine-chain"
    program = c.threshold.program(tuple(range(c.nf)))
    ops = backend_ops(REFERENCE)
    points = [ops.decode_g2(c.shares[i], checked=False) for i in range(c.nf)]
    info(benchmark, backend=REFERENCE, n=n, nf=c.nf, additions=program.additions,
         negations=program.negations, includes="addition chain only (G2 + and negate)")
    benchmark(ops.run_msm, program, points)


@pytest.mark.parametrize("backend", BLS_BACKENDS)
@pytest.mark.parametrize("n", SIZES_N)
def test_combine_multi(benchmark, bls, n, backend) -> None:
    c = bls[n, backend]
    benchmark.group = "combine-multi"
    info(benchmark, backend=backend, n=n, nf=c.nf, includes="nf unchecked decodes + nf-1 adds + 1 verify")
    cert = benchmark(c.multi.combine, c.shares, STATEMENT)
    assert c.multi.verify_cert(cert, STATEMENT)
    assert cert == bls[n, REFERENCE].multi.combine(c.shares, STATEMENT)   # byte-identical


@pytest.mark.parametrize("n", SIZES_N)
def test_combine_compile(benchmark, clusters, n) -> None:
    c = clusters[n]
    benchmark.group = "combine-compile"
    info(benchmark, n=n, nf=c.nf)
    xs = list(range(1, c.nf + 1))
    benchmark(lambda: compile_msm(lagrange_delta(xs, n)))


@pytest.mark.parametrize("backend", BLS_BACKENDS)
@pytest.mark.parametrize("n", SIZES_N)
def test_cert_verify(benchmark, bls, n, backend) -> None:
    c = bls[n, backend]
    benchmark.group = "cert-verify"
    info(benchmark, backend=backend, n=n, verified_cache=0)
    cert = c.threshold.combine(c.shares, STATEMENT)
    assert benchmark(c.threshold.verify_cert, cert, STATEMENT)


@pytest.mark.parametrize("backend", BLS_BACKENDS)
@pytest.mark.parametrize("n", SIZES_N)
def test_cert_verify_multi(benchmark, bls, n, backend) -> None:
    c = bls[n, backend]
    benchmark.group = "cert-verify-multi"
    info(benchmark, backend=backend, n=n, verified_cache=0, aggregate_key_cache="per bitmap")
    cert = c.multi.combine(c.shares, STATEMENT)
    assert benchmark(c.multi.verify_cert, cert, STATEMENT)


@pytest.mark.parametrize("backend", BLS_BACKENDS)
def test_share_verify(benchmark, bls, backend) -> None:
    c = bls[4, backend]
    benchmark.group = "share-verify"
    info(benchmark, backend=backend, n=4)
    assert benchmark(c.threshold.verify_share, 1, STATEMENT, c.shares[1])


@pytest.fixture(scope="module")
def mac_pair():
    sender = PairwiseMacKeys(replica(0), {replica(1): bytes(range(32))})
    receiver = PairwiseMacKeys(replica(1), {replica(0): bytes(range(32))})
    return sender, receiver


@pytest.mark.parametrize("size", MAC_SIZES)
def test_mac_blake2b(benchmark, mac_pair, size) -> None:
    sender, _ = mac_pair
    benchmark.group = f"mac-{size}B"
    info(benchmark, payload_bytes=size, algorithm="keyed BLAKE2b-256 (poe.crypto.mac)")
    tag = benchmark(sender.mac, replica(1), os.urandom(size))
    assert len(tag) == 32


@pytest.mark.parametrize("size", MAC_SIZES)
def test_mac_blake2b_verify(benchmark, mac_pair, size) -> None:
    sender, receiver = mac_pair
    benchmark.group = f"mac-{size}B"
    info(benchmark, payload_bytes=size, algorithm="keyed BLAKE2b-256 verify")
    data = os.urandom(size)
    assert benchmark(receiver.verify, replica(0), data, sender.mac(replica(1), data))


@pytest.mark.parametrize("size", MAC_SIZES)
def test_mac_hmac_sha256(benchmark, size) -> None:
    """The alternative (PROTOCOL.md §1.5 default), measured for the backend choice."""
    benchmark.group = f"mac-{size}B"
    info(benchmark, payload_bytes=size, algorithm="HMAC-SHA-256 (hmac.digest, OpenSSL)")
    key, data = bytes(range(32)), os.urandom(size)
    tag = benchmark(lambda: hmac.digest(key, b"PoE/MAC/v1" + data, "sha256"))
    assert len(tag) == 32


class _CryptographyEd25519:
    """The previous backend (cryptography/OpenSSL), as poe.crypto.ed25519 had it before issue
    #15: the baseline of the ed25519 groups."""

    def __init__(self, seed: bytes) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self._public = self._key.public_key()   # parsed once, as the old verifier cached it

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def verify(self, signer, data: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        if type(signature) is not bytes or len(signature) != 64:
            return False
        try:
            self._public.verify(signature, data)
        except (InvalidSignature, TypeError, ValueError):
            return False
        return True


ED_BACKENDS = ["pynacl", "cryptography"]


@pytest.fixture(scope="module")
def ed():
    seed = bytes(range(32))
    signer = Ed25519Signer(replica(0), seed)
    old = _CryptographyEd25519(seed)
    return {"pynacl": (signer, Ed25519Verifier({replica(0): signer.public_key()})),
            "cryptography": (old, old)}


@pytest.mark.parametrize("backend", ED_BACKENDS)
def test_ed25519_sign(benchmark, ed, backend) -> None:
    signer, _ = ed[backend]
    benchmark.group = "ed25519-sign"
    message = request_statement(os.urandom(250 - 64))
    info(benchmark, message_bytes=len(message), backend=backend)
    signature = benchmark(signer.sign, message)
    assert signature == ed["cryptography"][0].sign(message)   # byte-identical


@pytest.mark.parametrize("backend", ED_BACKENDS)
def test_ed25519_verify(benchmark, ed, backend) -> None:
    signer, verifier = ed[backend]
    benchmark.group = "ed25519-verify"
    message = request_statement(os.urandom(250 - 64))
    info(benchmark, message_bytes=len(message), backend=backend)
    assert benchmark(verifier.verify, replica(0), message, signer.sign(message))
