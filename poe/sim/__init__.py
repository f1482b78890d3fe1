"""Deterministic cluster simulator: the real protocol objects, a virtual clock, a seeded
hostile network, crashes, traces and safety checkers. Every run is reproducible from its
seed (``poe sim --seed N ...``)."""
