"""No secret ever appears in a repr, a str, an exception message, a traceback or CLI output."""
from __future__ import annotations

import base64
import os
import re
import traceback
from pathlib import Path

import pytest

from poe.cli.main import main
from poe.crypto import CombineError, KeyFileError, load_backend, load_secret, replica
from poe.crypto.bls import backend_classes, installed_backends
from poe.crypto.dealer import deal_cluster
from poe.crypto.fake import FakeCrypto
from poe.crypto.mac import directional_key


def secret_values(keys) -> list[bytes]:
    values = []
    for secret in keys.secrets.values():
        values.append(secret.ed25519_seed())
        if secret.bls_share() is not None:
            values.append(secret.bls_share())
        for peer, pair in secret.mac_pair_keys().items():
            values += [pair, directional_key(pair, secret.party, peer),
                       directional_key(pair, peer, secret.party)]
    return values


def forms(secret: bytes) -> list[str]:
    return [secret.hex(), secret.hex().upper(), repr(secret)[2:-1],
            base64.b64encode(secret).decode(), str(int.from_bytes(secret, "big")),
            str(int.from_bytes(secret, "little")), secret.decode("latin-1")]


def assert_clean(texts: list[str], secrets: list[bytes]) -> None:
    assert texts and secrets
    for text in texts:
        for secret in secrets:
            for form in forms(secret):
                assert form not in text, f"secret leaked into: {text[:120]!r}"
            # no 16-character window of the secret's hex either
            hexed = secret.hex()
            for start in range(0, len(hexed) - 16, 8):
                assert hexed[start:start + 16] not in text.lower()


def renderings(obj: object) -> list[str]:
    texts = [repr(obj), str(obj), format(obj)]
    for name in ("threshold_signer", "threshold", "macs", "signer", "verifier"):
        part = getattr(obj, name, None)
        if part is not None:
            texts += [repr(part), str(part)]
    return texts


def test_key_holding_objects_hide_their_keys(keys4) -> None:
    texts = []
    for secret in keys4.secrets.values():
        texts += renderings(secret)
    for suite in keys4.suites.values():
        texts += renderings(suite)
    for kind in ("bls", "bls-multi", "mac", "ed25519"):
        texts += renderings(load_backend(kind, keys4.cluster, keys4.replica_secret(0)))
    assert any("<hidden>" in t for t in texts)
    assert_clean(texts, secret_values(keys4))


def test_dealt_keys_repr_hides_secret_files() -> None:
    dealt = deal_cluster(4, 1)
    text = repr(dealt) + str(dealt)
    assert "replica-0.secret.toml" in text
    for content in dealt.secret_files().values():
        for value in re.findall(r'"([0-9a-f]{64})"', content):
            assert value not in text


def test_fake_backend_hides_its_keys() -> None:
    fake = FakeCrypto(4, 2, seed=b"leak-test", purpose="test")
    secrets = [fake._root, *fake._sign_keys.values(), fake._threshold._group_key,
               *fake._threshold._share_keys]
    texts = renderings(fake)
    for party in [replica(0), replica(3), None]:
        texts += renderings(fake.suite(party))
    assert_clean(texts, secrets)


def _error_texts(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


def test_secret_file_errors_quote_no_secret(keys4, tmp_path: Path) -> None:
    secrets = secret_values(keys4)
    source = (keys4.directory / "replica-1.secret.toml").read_text()
    other = (keys4.directory / "replica-2.secret.toml").read_text()
    own_share = re.search(r'bls_share = "(\w+)"', source).group(1)
    other_share = re.search(r'bls_share = "(\w+)"', other).group(1)
    own_ed = re.search(r'ed25519_secret_key = "(\w+)"', source).group(1)
    variants = [
        source.replace(own_share, other_share),               # does not match cluster
        source.replace(own_share, own_share[:-1] + "g"),      # not hex
        source.replace(own_share, own_share + "00"),          # wrong length
        source.replace(own_share, "ff" * 32),                 # above the group order
        source.replace(f'"{own_share}"', own_share),          # TOML syntax error on the line
        source.replace(f'"{own_ed}"', f'"{own_ed}\x01"'),     # illegal character
        source.replace(own_ed, own_ed[:40]),                  # truncated key
        source[:source.index(own_share) + 20],                # truncated file
        source.replace('id = 1', 'id = 9'),
    ]
    texts = []
    for index, text in enumerate(variants):
        path = tmp_path / f"replica-1-{index}.secret.toml"
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.write(fd, text.encode())
        os.close(fd)
        with pytest.raises(KeyFileError) as info:
            load_secret(path, keys4.cluster)
        texts += _error_texts(info.value)
    assert_clean(texts, secrets)


def test_combine_and_construction_errors_quote_no_secret(keys4) -> None:
    suite = keys4.suites[replica(0)]
    statement = b"PoE/SUPPORT/v1" + bytes(48)
    shares = {i: keys4.suites[replica(i)].threshold_signer.share_sign(statement)
              for i in range(3)}
    shares[1] = shares[2]
    with pytest.raises(CombineError) as info:
        suite.threshold.combine(shares, statement)
    texts = _error_texts(info.value)
    bad_key = b"\xff" * 32
    for backend in installed_backends():     # each backend's own refusal of the key
        with pytest.raises(ValueError) as bad:
            backend_classes(backend)[0](0, bad_key)
        texts += _error_texts(bad.value)
    assert_clean(texts, secret_values(keys4) + [bad_key])


def test_keygen_output_shows_no_secret(tmp_path: Path, capsys) -> None:
    assert main(["keygen", "--replicas", "4", "--clients", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr()
    secrets = []
    for path in tmp_path.glob("*.secret.toml"):
        secrets += [bytes.fromhex(v) for v in re.findall(r'"([0-9a-f]{64})"', path.read_text())]
    assert_clean([out.out + out.err], secrets)


def test_the_scanner_catches_a_leak(keys4) -> None:
    """Prove the checker works: the key in any of its forms, or a long piece of it."""
    share = keys4.replica_secret(0).bls_share()
    for form in forms(share)[:5]:
        with pytest.raises(AssertionError, match="secret leaked"):
            assert_clean([f"PrivateKey({form})"], [share])
    with pytest.raises(AssertionError):
        assert_clean([f"key prefix {share.hex()[8:40]}"], [share])


def test_the_scanner_catches_blspys_private_key_repr(keys4) -> None:
    """blspy's own PrivateKey repr shows the key: why no blspy key object may be logged."""
    blspy = pytest.importorskip(
        "blspy", reason="blspy is not installed (no wheels for CPython 3.13): there is no "
        "blspy PrivateKey whose repr could leak")
    share = keys4.replica_secret(0).bls_share()
    with pytest.raises(AssertionError, match="secret leaked"):
        assert_clean([repr(blspy.PrivateKey.from_bytes(share))], [share])
