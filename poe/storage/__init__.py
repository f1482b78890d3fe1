"""Durable storage of a replica (issue #7): the ledger, stable checkpoints, votes, the view.

``store.Store`` is the SQLite database of one replica's data directory; ``restore`` puts a
replica back on its last stable checkpoint; ``verify`` checks a data directory offline
(``poe ledger verify``). See docs/storage.md.
"""
from poe.storage.store import SYNC_POLICIES, Store, StoreError

__all__ = ["SYNC_POLICIES", "Store", "StoreError"]
