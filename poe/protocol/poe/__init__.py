"""The PoE protocol: replica (normal case), checkpoints, client (PROTOCOL.md §2, §3, §5)."""
