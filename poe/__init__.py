"""poe: a Proof-of-Execution (PoE) Byzantine fault-tolerant replica.

Layout: ``poe._core`` holds compiled kernels only (codec, digest, window, kv);
protocol logic lives in ``poe.protocol``; crypto backends in ``poe.crypto``.
"""

__version__ = "0.1.0"
