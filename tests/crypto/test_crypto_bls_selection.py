"""Choosing the BLS backend (docs/crypto.md): ``POE_BLS_BACKEND`` if set, else pyblst, else
blspy; either library alone is enough, a missing or unknown choice is one clear error.
Which libraries are "installed" is simulated (``bls._importable``), so every case runs
whatever this interpreter has."""
from __future__ import annotations

import pytest

from poe.crypto import CryptoError, bls, load_backend
from poe.crypto.bls import (
    BACKEND_ENV,
    BLS_BACKENDS,
    BlsMultiVerifier,
    BlsThresholdSigner,
    BlsThresholdVerifier,
    backend_classes,
    backend_ops,
    installed_backends,
    select_backend,
)


def only(monkeypatch, *names: str) -> None:
    """Pretend that exactly the libraries of backends ``names`` are installed."""
    monkeypatch.setattr(bls, "_importable", lambda name: name in names)


@pytest.mark.parametrize("installed,chosen", [
    (("pyblst", "blspy"), "pyblst"), (("pyblst",), "pyblst"), (("blspy",), "blspy")])
def test_default_is_the_first_installed(monkeypatch, installed, chosen) -> None:
    only(monkeypatch, *installed)
    assert select_backend({}) == chosen
    assert select_backend({BACKEND_ENV: "  "}) == chosen     # blank counts as unset
    assert installed_backends() == tuple(n for n in BLS_BACKENDS if n in installed)


@pytest.mark.parametrize("name", BLS_BACKENDS)
def test_env_choice_obeyed_when_installed(monkeypatch, name) -> None:
    only(monkeypatch, *BLS_BACKENDS)
    assert select_backend({BACKEND_ENV: name}) == name
    assert select_backend({BACKEND_ENV: f" {name.upper()} "}) == name


@pytest.mark.parametrize("name,hint", [("pyblst", "pip install pyblst"),
                                       ("blspy", "CPython 3.11 and 3.12 only")])
def test_env_choice_not_installed_is_one_clear_error(monkeypatch, name, hint) -> None:
    other = next(n for n in BLS_BACKENDS if n != name)
    only(monkeypatch, other)
    with pytest.raises(CryptoError) as info:
        select_backend({BACKEND_ENV: name})
    message = str(info.value)
    assert f"{BACKEND_ENV}={name} but {name} is not installed" in message
    assert hint in message and "\n" not in message
    assert select_backend({}) == other


def test_unknown_env_choice_and_no_backend_at_all(monkeypatch) -> None:
    with pytest.raises(CryptoError, match="choose one of pyblst, blspy"):
        select_backend({BACKEND_ENV: "openssl"})
    only(monkeypatch)
    with pytest.raises(CryptoError, match="no BLS backend is installed"):
        select_backend({})
    assert installed_backends() == ()


def test_the_process_environment_is_read(monkeypatch) -> None:
    only(monkeypatch, *BLS_BACKENDS)
    monkeypatch.setenv(BACKEND_ENV, "blspy")
    assert select_backend() == "blspy"
    monkeypatch.setenv(BACKEND_ENV, "nonsense")
    with pytest.raises(CryptoError, match="choose one of"):
        select_backend()


def test_unknown_backend_classes_and_ops() -> None:
    for call in (backend_classes, backend_ops):
        with pytest.raises(CryptoError, match="unknown BLS backend 'openssl'"):
            call("openssl")


def test_the_backend_independent_classes_need_a_backend() -> None:
    key = (5).to_bytes(32, "big")
    for build in (lambda: BlsThresholdSigner(0, key), lambda: BlsMultiVerifier([]),
                  lambda: BlsThresholdVerifier(bytes(48), [])):
        with pytest.raises(TypeError, match="has no BLS backend: use backend_classes"):
            build()


def test_installed_backends_build_the_suites(keys4, monkeypatch) -> None:
    """Every installed backend (at least one: the package depends on one per Python) loads
    the keys and certifies; its classes are the backend-independent ones' subclasses."""
    names = installed_backends()
    assert names, "no BLS backend installed: the package's dependencies were not installed"
    for name in names:
        monkeypatch.setenv(BACKEND_ENV, name)
        signer_class, threshold_class, multi_class = backend_classes(name)
        assert issubclass(signer_class, BlsThresholdSigner)
        assert issubclass(threshold_class, BlsThresholdVerifier)
        assert issubclass(multi_class, BlsMultiVerifier)
        assert backend_ops(name).name == name
        suites = [load_backend("bls", keys4.cluster, keys4.replica_secret(i)) for i in range(4)]
        assert type(suites[0].threshold) is threshold_class
        statement = b"PoE/SUPPORT/v1" + bytes(48)
        shares = {i: suites[i].threshold_signer.share_sign(statement) for i in (1, 2, 3)}
        assert suites[0].threshold.verify_cert(suites[0].threshold.combine(shares, statement),
                                               statement)
