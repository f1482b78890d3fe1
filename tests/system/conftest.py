"""Fixtures of the system tests; the helpers live in syshelpers.py."""
from __future__ import annotations

from pathlib import Path

import pytest
from syshelpers import LocalCluster


@pytest.fixture
def local_cluster(tmp_path):
    """Factory of LocalClusters that are always stopped at the end of the test."""
    made: list[LocalCluster] = []

    def make(config: Path, n: int = 4, settings=()) -> LocalCluster:
        cluster = LocalCluster(tmp_path, config, n, settings)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        if cluster.procs:
            cluster.stop()
