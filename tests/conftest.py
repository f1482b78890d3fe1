"""Suite-wide settings.

The suite runs on the BLS backend a plain install has: blspy on CPython 3.11 and 3.12 (where
the package depends on it), pyblst where blspy is not installed (CPython 3.13, which blspy
has no wheels for). The test extra also installs pyblst, so where both are present
tests/crypto/test_crypto_bls_backends.py checks the two byte for byte; a run may choose
either with POE_BLS_BACKEND (an explicit choice is kept)."""
import importlib
import os


def _installed(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


os.environ.setdefault("POE_BLS_BACKEND", "blspy" if _installed("blspy") else "pyblst")
