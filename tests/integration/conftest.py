import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from cluster import Cluster  # noqa: E402


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cairn"))
    try:
        c.start()  # a cluster that fails half-way is stopped all the same
        yield c
    finally:
        c.shutdown()
