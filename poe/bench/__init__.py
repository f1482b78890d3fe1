"""The load generator: YCSB workloads, closed-loop client workers, the coordinator and its
report (``poe bench``, ``poe cluster``)."""
