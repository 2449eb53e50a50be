"""A Dask driver for tests/core/test_shared_store.py: workers with HOMEs of their own, one bucket.

Run as a script (its persisted function lives in ``__main__``, so it travels to the workers by
value, as a notebook's does): ``python _dask_driver.py URL PROJECT BASE``. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time

from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import NannyPlugin

import persist_to_disk as ptd


@ptd.persistf()
def work(x):
    with open(os.path.join(os.environ["HOME"], "computed.txt"), "a") as fh:
        fh.write(f"{x}\n")
    return x * 10


class OwnHome(NannyPlugin):
    """Restart each worker with a HOME of its own: a machine of its own, as far as the cache can tell."""

    restart = True

    def __init__(self, base: str) -> None:
        self.base = base

    def setup(self, nanny) -> None:  # noqa: ANN001
        import uuid

        home = os.path.join(self.base, f"worker-{uuid.uuid4().hex[:8]}")
        os.makedirs(home, exist_ok=True)
        nanny.env.update({"HOME": home})


def main() -> None:
    url, project, base = sys.argv[1:4]
    ptd.config.set_persist_path(url)
    ptd.config.set_project_path(project)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, local_directory=os.path.join(base, "dask")) as cluster, \
            Client(cluster) as client:
        client.register_plugin(OwnHome(base))
        deadline = time.monotonic() + 120
        while True:
            homes = set(client.run(lambda: os.environ["HOME"]).values())
            if len(homes) == 2 and all(h.startswith(base) for h in homes):
                break
            assert time.monotonic() < deadline, f"workers did not restart with their own HOME: {homes}"
            time.sleep(0.1)
        results = client.gather(client.map(work, range(8)))
    driver = [work(x) for x in range(8)]
    print(json.dumps({"results": results, "driver": driver, "homes": sorted(homes)}))


if __name__ == "__main__":
    main()
