"""No allocation per I/O in steady state: a replicated 4 KiB write costs the
SDC and the SDSs no heap allocation once their pools have grown to the load.

Every daemon runs with the allocation counter (tests/tools/alloc_count.c)
preloaded. The writes go to extents that already hold data, at QD1 through
libnbd, after a warm-up; the daemons' background work (heartbeats, lease
pings) is measured over an idle window of the same length and taken off."""
import os
import time

import nbd
import pytest

from cluster import Cluster, read_alloc_count

WRITES = 3000
EXTENTS = 16


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("alloc"), count_allocations=True)
    try:
        c.start()
        yield c
    finally:
        c.shutdown()


def counts(cluster):
    return {n: read_alloc_count(cluster.alloc_file(n))[0]
            for n in cluster.daemons if n != "mdm"}


def delta(a, b):
    return {n: b[n] - a[n] for n in a}


def write_burst(h, n, data):
    for i in range(n):
        h.pwrite(data, ((i % EXTENTS) << 20) + (i * 4096) % (1 << 20))


def test_replicated_4k_write_allocates_nothing(cluster):
    cluster.create_volume("alloc", EXTENTS << 20)
    h = nbd.NBD()
    h.connect_uri(cluster.uri("alloc"))
    data = os.urandom(4096)
    write_burst(h, WRITES, data)  # every extent allocated, every pool grown
    before = counts(cluster)
    t0 = time.monotonic()
    write_burst(h, WRITES, data)
    took = time.monotonic() - t0
    busy = delta(before, counts(cluster))
    # the same time with no I/O: what the daemons allocate on their own
    before = counts(cluster)
    time.sleep(took)
    idle = delta(before, counts(cluster))
    h.shutdown()
    per_write = {n: (busy[n] - idle[n]) / WRITES for n in busy}
    total = sum(per_write.values())
    print(f"{WRITES} replicated 4 KiB writes in {took:.2f} s; heap allocations per write: "
          + ", ".join(f"{n} {v:.2f}" for n, v in sorted(per_write.items()))
          + f"; total {total:.2f} (background over the same time: {sum(idle.values())})")
    # the daemons' own timers may fall into either window: allow a few
    assert total < 0.05, f"{total:.2f} allocations per replicated 4 KiB write"
