"""Suite-wide settings.

The suite runs on blspy, the BLS backend a plain install has (`pip install .`); pyblst, the
`[fast]` extra, is installed with the test extra so tests/crypto/test_crypto_bls_backends.py
checks the two byte for byte, and a run may choose it with POE_BLS_BACKEND=pyblst."""
import os

os.environ.setdefault("POE_BLS_BACKEND", "blspy")
