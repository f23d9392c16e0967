"""How fast does the gateway answer the routes a page or a program polls, under many users?

Starts a local gunicorn (``gunicorn -c gateway/gunicorn_conf.py``, 2 sync workers as ``emofuse
serve`` runs it) on a fresh SQLite in a temporary folder, seeded through the gateway's models with
a few users (each with an API token and a signed-in browser session) and their finished analyses
(17 windows each, a 60 s recording, with the verdict). No Triton is needed. Then locust, run as a
library, sends 10, 50 and 100 concurrent users at it, one step after the other; each user waits 0.5
to 1.5 s between requests (``--wait``: a page following a job polls once a second) and asks, in
turn, for:

- the status ``GET /api/v1/analyses/<id>``,
- the timeline ``GET /api/v1/analyses/<id>/timeline``,
- the history ``GET /api/v1/analyses?page=N`` (20 a page),
- the history page ``GET /`` (HTML, with the session cookie).

Prints, per user count and route: requests, failures, requests/s, p50/p95/p99 as the client saw
them (queueing included) and the mean time inside Flask (from the gateway's own
``emofuse_http_request_duration_seconds`` at ``/metrics``); then whether p99 stays under 50 ms at
50 users (the issue's aim for this machine). With each step: the load average (the machine may be
shared) and the CPU that gunicorn (master and workers) and locust itself used, in % of one core:
locust runs on the same cores as the server.

    .venv/bin/pip install locust        # or .venv/bin/pip install -e '.[test]'
    .venv/bin/python benchmarks/gateway_latency.py [--users 10,50,100] [--seconds 30] [--workers 2]
"""

from __future__ import annotations

try:
    import gevent
    import psutil  # a dependency of locust
    from locust import FastHttpUser, between, task
    from locust.env import Environment
except ImportError:  # before anything else: locust patches the standard library when imported
    raise SystemExit("This benchmark needs locust: `.venv/bin/pip install locust` (or `.venv/bin/pip install -e '.[test]'`).") from None

import argparse
import contextlib
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _gateway import Account, Gunicorn, environment, get, load, make_app, samples, seed

ROUTES = {  # locust's name for each route -> the gateway's URL rule, as /metrics labels it
    "status": "/api/v1/analyses/<int:analysis_id>",
    "timeline": "/api/v1/analyses/<int:analysis_id>/timeline",
    "history API": "/api/v1/analyses",
    "history page": "/",
}
AIM_USERS, AIM_P99_MS = 50, 50.0


class Reader(FastHttpUser):
    """One person (or program) following their analyses: status, timeline, history, the page."""

    accounts: list[Account] = []
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.account = random.choice(self.accounts)
        self.pages = max(1, -(-len(self.account.analyses) // 20))

    def _analysis(self) -> int:
        return random.choice(self.account.analyses)

    def _get(self, name: str, path: str, headers: dict[str, str]) -> None:
        """GET ``path``; anything but a 200 (a redirect to the sign-in page too) counts as failed."""
        with self.client.get(path, headers=headers, name=name, allow_redirects=False, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}")

    @task
    def status(self) -> None:
        self._get("status", f"/api/v1/analyses/{self._analysis()}", self.account.headers)

    @task
    def timeline(self) -> None:
        self._get("timeline", f"/api/v1/analyses/{self._analysis()}/timeline", self.account.headers)

    @task
    def history(self) -> None:
        self._get("history API", f"/api/v1/analyses?page={random.randint(1, self.pages)}", self.account.headers)

    @task
    def history_page(self) -> None:
        self._get("history page", "/", {"Cookie": self.account.cookie})


@dataclass(frozen=True)
class Row:
    route: str
    requests: int
    failures: int
    per_s: float
    p50: float
    p95: float
    p99: float
    server_ms: float


def server_seconds(url: str) -> dict[str, tuple[float, float]]:
    """Per URL rule: (count, sum of seconds) of the gateway's request-duration histogram, all workers."""
    text = get(url + "/metrics")[1].decode()
    counts = samples(text, "emofuse_http_request_duration_seconds_count", "route")
    sums = samples(text, "emofuse_http_request_duration_seconds_sum", "route")
    return {route: (counts[route], sums.get(route, 0.0)) for route in counts}


def cpu_seconds(process: psutil.Process) -> float:
    """CPU seconds (user and system) of ``process`` and its children so far."""
    total = 0.0
    for p in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            times = p.cpu_times()
            total += times.user + times.system
    return total


def step(url: str, users: int, seconds: float, server: psutil.Process) -> tuple[list[Row], str]:
    """``users`` locust users for ``seconds`` (after all have started): a row per route and one for
    all, and the CPU that gunicorn and locust used meanwhile."""
    env = Environment(user_classes=[Reader], host=url)
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=max(users, 1))
    while runner.user_count < users:
        gevent.sleep(0.1)
    gevent.sleep(1.0)  # every user past its first request
    env.stats.reset_all()
    me = psutil.Process()
    before, started, cpu = server_seconds(url), time.monotonic(), (cpu_seconds(server), cpu_seconds(me))
    gevent.sleep(seconds)
    elapsed, after = time.monotonic() - started, server_seconds(url)
    busy = [100 * (now - then) / elapsed for now, then in zip((cpu_seconds(server), cpu_seconds(me)), cpu)]
    runner.stop()
    runner.quit()
    entries = {name: env.stats.get(name, "GET") for name in ROUTES}
    rows = [_row(name, entry, elapsed, _server_ms(before, after, ROUTES[name])) for name, entry in entries.items()]
    cpu_note = f"CPU: gunicorn {busy[0]:.0f} %, locust {busy[1]:.0f} % of one core"
    return rows + [_row("all", env.stats.total, elapsed, float("nan"))], cpu_note


def _server_ms(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], rule: str) -> float:
    (n0, s0), (n1, s1) = before.get(rule, (0.0, 0.0)), after.get(rule, (0.0, 0.0))
    return 1000 * (s1 - s0) / (n1 - n0) if n1 > n0 else float("nan")


def _row(name: str, entry: Any, elapsed: float, server_ms: float) -> Row:
    pct = entry.get_response_time_percentile
    return Row(name, entry.num_requests, entry.num_failures, entry.num_requests / elapsed, pct(0.5), pct(0.95), pct(0.99), server_ms)


def report(users: int, rows: list[Row], cpu_note: str) -> None:
    print(f"\n{users} users ({load()}; {cpu_note})")
    print(f"{'route':<14}{'requests':>9}{'failed':>8}{'req/s':>8}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'in Flask ms':>13}")
    for r in rows:
        print(f"{r.route:<14}{r.requests:>9}{r.failures:>8}{r.per_s:>8.1f}{r.p50:>8.0f}{r.p95:>8.0f}{r.p99:>8.0f}{r.server_ms:>13.1f}")


def verdict(results: dict[int, list[Row]]) -> None:
    rows = results.get(AIM_USERS)
    if rows is None:
        print(f"\naim (p99 < {AIM_P99_MS:.0f} ms at {AIM_USERS} users): not measured (no step of {AIM_USERS} users)")
        return
    worst = max(rows[:-1], key=lambda r: r.p99)
    met = worst.p99 < AIM_P99_MS and not any(r.failures for r in rows)
    print(f"\naim (p99 < {AIM_P99_MS:.0f} ms at {AIM_USERS} users, every route): {'met' if met else 'NOT met'}; "
          f"slowest route {worst.route}, p99 {worst.p99:.0f} ms, all routes {rows[-1].p99:.0f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="10,50,100", help="concurrent users of each step, comma-separated (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds of each step (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default: %(default)s)")
    parser.add_argument("--accounts", type=int, default=5, help="seeded users (default: %(default)s)")
    parser.add_argument("--analyses", type=int, default=25, help="finished analyses of each (default: %(default)s: two history pages)")
    parser.add_argument("--windows", type=int, default=17, help="windows of each analysis (default: %(default)s, a 60 s recording)")
    parser.add_argument("--wait", type=float, default=1.0, help="mean seconds a user waits between requests, +-50%% (default: %(default)s)")
    args = parser.parse_args()
    Reader.wait_time = between(args.wait * 0.5, args.wait * 1.5)
    with tempfile.TemporaryDirectory(prefix="emofuse-bench-") as tmp:
        root = Path(tmp)
        Reader.accounts = seed(make_app(root / "data"), args.accounts, args.analyses, args.windows)
        print(f"seeded {args.accounts} users x {args.analyses} analyses x {args.windows} windows on SQLite; "
              f"gunicorn, {args.workers} sync workers; {load()}", flush=True)  # fmt: skip
        with Gunicorn(root, environment(root / "data"), args.workers) as server:
            server.wait()
            results = {}
            for users in (int(n) for n in args.users.split(",")):
                results[users], cpu_note = step(server.url, users, args.seconds, psutil.Process(server.process.pid))
                report(users, results[users], cpu_note)
        verdict(results)


if __name__ == "__main__":
    main()
