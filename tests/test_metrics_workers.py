"""/metrics behind a real 4-worker gunicorn: whichever worker answers a scrape reports every
worker's counts, so counters never go back and the request counter is the requests made, even
when a worker dies and gunicorn starts another."""

import itertools
import os
import signal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import READY_DETAILS
from tests.harness import Connection, Gunicorn

WORKERS = 4
SCRAPES = 30


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("prometheus")
    (folder / "counter_1.db").write_bytes(b"an earlier run's samples")
    return folder


@pytest.fixture(scope="module")
def server(committed_env, metrics_dir):
    gunicorn = Gunicorn(
        {**committed_env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, workers=WORKERS
    )
    yield gunicorn
    gunicorn.stop()


def scrape(conn: Connection) -> dict[tuple[str, frozenset], float]:
    """The counters' samples of one scrape (histograms' buckets, counts and sums too)."""
    conn.conn.request("GET", "/metrics", headers=READY_DETAILS)
    response = conn.conn.getresponse()
    body = response.read().decode()
    assert response.status == 200, body
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        if family.type in ("counter", "histogram")
        for s in family.samples
        if not s.name.endswith("_created")
    }


def unauthenticated_me(conn: Connection) -> None:
    """A request of the `auth` group, which nothing else in this test sends."""
    assert conn.request("GET", "/api/auth/me").status == 401


def test_every_counter_is_monotonic_and_sums_every_worker(server, metrics_dir):
    assert not (metrics_dir / "counter_1.db").exists(), "the folder is emptied at start"
    workers = server.pinned_connections()
    auth_401 = (
        "backoffice_http_requests_total",
        frozenset({"group": "auth", "status": "401"}.items()),
    )
    scrapes = [scrape(workers[0])]
    sent = 0
    for i in range(1, SCRAPES):
        for conn in workers[: 1 + i % WORKERS]:  # uneven load across workers
            unauthenticated_me(conn)
            sent += 1
        if i == SCRAPES // 2:
            # A worker dies: its counts stay, gunicorn starts another, which counts from 0.
            victim = workers.pop(1)
            os.kill(victim.pid, signal.SIGKILL)
            victim.close()
            for conn in workers:
                conn.close()
            workers = server.pinned_connections()
            assert victim.pid not in {c.pid for c in workers}
            gone = list(metrics_dir.glob(f"gauge_live*_{victim.pid}.db"))
            assert not gone, "a dead worker's live gauges are dropped"
        scrapes.append(scrape(workers[i % WORKERS]))
    for conn in workers:
        conn.close()

    for earlier, later in itertools.pairwise(scrapes):
        went_back = {
            key: (v, later.get(key)) for key, v in earlier.items() if later.get(key, 0) < v
        }
        assert not went_back, f"counters went back between scrapes: {went_back}"
    first = scrapes[0].get(auth_401, 0)
    assert scrapes[-1][auth_401] - first == sent, "every worker's requests, counted once"
    metrics_200 = (
        "backoffice_http_requests_total",
        frozenset({"group": "metrics", "status": "200"}.items()),
    )
    assert scrapes[-1][metrics_200] - scrapes[0].get(metrics_200, 0) == SCRAPES - 1, (
        "the scrapes before the last"
    )
