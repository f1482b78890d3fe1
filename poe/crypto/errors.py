"""Exceptions of the crypto layer.

Each exception says what failed and what to do about it. None of them may ever carry key
material: messages name files, fields, parties and sizes, never secret values (a test scans
them). Verification failures of data from peers are *not* exceptions: ``verify*`` methods
return ``False`` so a Byzantine peer can never crash a replica.
"""
from __future__ import annotations

__all__ = ["CombineError", "CryptoError", "InsecureBackendError", "KeyFileError"]


class CryptoError(Exception):
    """Base class of every error raised by :mod:`poe.crypto`."""


class CombineError(CryptoError):
    """``nf`` shares did not combine into a valid certificate.

    ``bad_signers`` names the replicas whose share failed its individual check (sorted);
    drop them and combine again once ``nf`` good shares are available (PROTOCOL.md §2.5).
    """

    def __init__(self, message: str, bad_signers: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.bad_signers: tuple[int, ...] = tuple(sorted(bad_signers))


class InsecureBackendError(CryptoError):
    """The ``fake`` backend was requested outside a simulation, test or insecure benchmark."""


class KeyFileError(CryptoError):
    """A cluster or secret key file is unusable. One error names the file and the field.

    ``path`` is the file as given by the caller, ``field`` the dotted field name (``None`` for
    problems with the file as a whole) and ``problem`` the human-readable reason, which never
    quotes a secret value.
    """

    def __init__(self, path: str, field: str | None, problem: str) -> None:
        where = f"{path}: field '{field}'" if field else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.field = field
        self.problem = problem
