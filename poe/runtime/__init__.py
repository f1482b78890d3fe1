"""Runtime: drives protocol objects with real time, the ZeroMQ transport and real keys.

``replica`` runs one PoEReplica per process; ``client`` runs many PoEClient objects in one
process; ``timers``, ``log`` and ``procs`` are their small shared helpers.
"""
