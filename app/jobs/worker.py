"""`backoffice worker`: claim and run jobs until told to stop.

Each of `--concurrency` threads loops: sweep (now and then), claim one job, run it under its
lease, or sleep `WORKER_POLL_SECONDS`. Chores (the hourly prune, given by the command that starts
the worker: this package knows no area) run on a thread of their own each, at start and then
every so often. SIGTERM or Ctrl-C stops claiming and lets running jobs finish; a second one
exits at once (the leases then run out and other workers take the jobs).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from app.jobs import queue
from app.jobs.runner import Outcome, Progress, run_claim

log = logging.getLogger(__name__)
SWEEP_SECONDS = 10
MAX_BACKOFF_SECONDS = 30.0  # the longest wait between claims while the data engine is down


def worker_id(thread: int = 0) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{thread}"


def run_one(
    backoffice,
    claim: queue.Claim,
    on_progress: Callable[[Progress], None] | None = None,
    vouched: frozenset[str] = frozenset(),
) -> Outcome:
    s = backoffice.settings
    return run_claim(
        backoffice,
        claim,
        lease_seconds=s.job_lease_seconds,
        heartbeat_seconds=s.job_heartbeat_seconds,
        on_progress=on_progress,
        vouched=vouched,
    )


def run_now(
    backoffice, job_id: int, on_progress=None, *, files: Iterable[str] = ()
) -> Outcome | None:
    """Claim one queued job by id and run it in this process (the CLI's synchronous mode).
    `files`: paths the caller was given by a person, which the job may use wherever they are
    (a worker accepts only paths inside the job folders)."""
    claim = queue.claim(
        backoffice.engines.data, worker_id(), backoffice.settings.job_lease_seconds, job_id=job_id
    )
    vouched = frozenset(os.path.abspath(f) for f in files)
    return None if claim is None else run_one(backoffice, claim, on_progress, vouched)


class Backoff:
    """Waits that double with each failure in a row, from `first` up to `longest` seconds,
    spread by a fifth either way so that many workers do not retry in step."""

    def __init__(self, first: float, longest: float = MAX_BACKOFF_SECONDS) -> None:
        self.first = first
        self.longest = longest
        self.failures = 0

    def next(self) -> float:
        wait = min(self.longest, self.first * 2**self.failures)
        self.failures += 1
        return wait * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.failures = 0


@dataclass(frozen=True)
class Chore:
    """Work a worker does beside its jobs: `run()` at start, then every `every` seconds (its
    own schedule, its own lock if only one worker may do it at a time)."""

    name: str
    every: float
    run: Callable[[], object]


class Worker:
    def __init__(
        self,
        backoffice,
        concurrency: int = 1,
        kinds: list[str] | None = None,
        chores: Sequence[Chore] = (),
    ) -> None:
        self.backoffice = backoffice
        self.concurrency = concurrency
        self.kinds = kinds
        self.chores = tuple(chores)
        self.stopping = threading.Event()
        self._last_sweep = 0.0
        self._sweep_lock = threading.Lock()

    def _sweep(self) -> None:
        with self._sweep_lock:
            if time.monotonic() - self._last_sweep < SWEEP_SECONDS:
                return
            self._last_sweep = time.monotonic()
        for job_id, kind, status in queue.sweep(self.backoffice.engines.data):
            log.warning("job %s (%s) ended as %s: its worker was lost", job_id, kind, status)

    def loop(self, thread: int) -> None:
        me = worker_id(thread)
        poll = self.backoffice.settings.worker_poll_seconds
        backoff = Backoff(first=max(poll, 0.5))
        while not self.stopping.is_set():
            try:
                self._sweep()
                claim = queue.claim(
                    self.backoffice.engines.data,
                    me,
                    self.backoffice.settings.job_lease_seconds,
                    kinds=self.kinds,
                )
            except Exception as exc:  # the data engine is down: wait longer each time
                wait = backoff.next()
                log.warning(
                    "worker %s: cannot claim: %s; retrying in %.1f s",
                    me,
                    str(exc).splitlines()[0],
                    wait,
                )
                self.stopping.wait(wait)
                continue
            if backoff.failures:
                log.warning("worker %s: the data engine answers again", me)
                backoff.reset()
            if claim is None:
                self.stopping.wait(poll)
                continue
            log.info(
                "job %s (%s) attempt %s: started by %s", claim.job_id, claim.kind, claim.attempt, me
            )
            try:
                outcome = run_one(self.backoffice, claim)
            except Exception:  # recording the outcome failed (the data engine went away):
                # the lease runs out and the job is taken up again; this thread carries on.
                log.exception("job %s: outcome not recorded", claim.job_id)
                self.stopping.wait(backoff.next())
                continue
            log.info(
                "job %s: %s%s",
                claim.job_id,
                outcome.status,
                f" ({outcome.error})" if outcome.error else "",
            )

    def do_chore(self, chore: Chore) -> None:
        while not self.stopping.is_set():
            try:
                chore.run()
            except Exception as exc:  # an engine is down: the next round tries again
                log.warning("%s failed: %s", chore.name, str(exc).splitlines()[0])
            self.stopping.wait(chore.every)

    def run(self) -> None:
        def stop(signum, _frame):
            if self.stopping.is_set():
                log.warning("stopping now")
                os._exit(1)
            log.warning("stopping after the running jobs (again to stop at once)")
            self.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        threads = [
            threading.Thread(target=self.loop, args=(n,), name=f"worker-{n}", daemon=True)
            for n in range(self.concurrency)
        ]
        for t in threads:
            t.start()
        for chore in self.chores:  # daemons: a stop does not wait for a chore to finish
            threading.Thread(
                target=self.do_chore, args=(chore,), name=chore.name, daemon=True
            ).start()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.5)
        sys.stdout.flush()
