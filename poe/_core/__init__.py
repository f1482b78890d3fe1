"""Compiled hot-path kernels (Cython). Nothing here holds protocol logic.

Modules: codec (wire format), digest (SHA-256 digests, table keys),
window (watermark window), kv (YCSB state machine with undo).
"""

KERNELS = ("codec", "digest", "window", "kv")
