"""Baseline protocols on PoE's fabric (PROTOCOL.md §9): same codec envelope, kernels,
crypto, runtime and simulator, behind the same events -> actions interface as PoE.

Select one with ``protocol = "..."`` in the configuration (``poe.protocol.registry``).
"""
