"""Run every benchmark in order on one private TLS broker, print the table, save it as JSON.

Environment:

* FED_BENCH_SCALE (default 1.0): record counts (1.0 = 50,000 employees for the bulk run, 100,000 for the snapshot);
  0.1 gives a quick run.
* FED_BENCH_IDLE_SECONDS (default 60): the idle window of benchmark 4.
* FED_BENCH_ONLY (default all): comma-separated subset of bulk, import, outbox, idle, snapshot, failover (the pair),
  cluster_failover (a broker node of three stops).
* FED_BENCH_BACKENDS (default sqlite,postgresql): PostgreSQL is skipped (and said so) when not reachable.
* FED_BENCH_PARTNERS (default 200), FED_BENCH_OUTBOX_ITERATIONS (default 2000).
* FED_BENCH_IDLE_LINKS (default 200,1000): the hub's link counts measured idle (benchmark 4).
* FED_BENCH_FAILOVER_STEADY, FED_BENCH_FAILOVER_AFTER (default 30 each): the windows of the broker-node-stop
  benchmark (seconds of steady stream before the stop, and measured after it).
* FED_BENCH_KEEP=1 keeps the scratch folder (databases, daemon logs, broker log) for a post-mortem.
* FED_BENCH_RESULTS (default benchmarks/results): where the results file goes.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.table import Table

from benchmarks import bulk, cluster_failover, failover, idle, imports, outbox, shovel, snapshot
from benchmarks.common import Context, Result, env_float, scale
from tests.support.broker import TestBroker
from tests.support.pg import pg_reachable
from tests.support.pki import make_pki

RESULTS = Path(os.environ.get("FED_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")
console = Console(highlight=False)

Bench = Callable[[Context, str], list[Result]]
# (name, function, backends it runs on); PostgreSQL repeats 1-3 and 5 (benchmark 6 of the issue)
PLAN: list[tuple[str, Bench, tuple[str, ...]]] = [
    ("bulk", bulk.run, ("sqlite",)),
    ("import", imports.run, ("sqlite",)),
    ("outbox", outbox.run, ("sqlite",)),
    ("idle", idle.run, ("sqlite",)),
    ("snapshot", snapshot.run, ("sqlite",)),
    ("bulk", bulk.run, ("postgresql",)),
    ("import", imports.run, ("postgresql",)),
    ("outbox", outbox.run, ("postgresql",)),
    ("snapshot", snapshot.run, ("postgresql",)),
    ("failover", failover.run, ("postgresql",)),  # the daemon pair shares a PostgreSQL database
    ("cluster_failover", cluster_failover.run, ("sqlite",)),  # a broker node stops under a stream
]


@contextlib.contextmanager
def session(keep: bool = False) -> Iterator[Context]:
    """A scratch folder and one private TLS broker, both gone afterwards (unless `keep`), even on failure."""
    root = Path(tempfile.mkdtemp(prefix="fedbench-"))
    broker = TestBroker(root / "broker", make_pki(root / "pki"))
    # the Shovel peer of benchmark 1 needs its plugin on this private node (the test harness enables management only)
    (broker.root / "enabled_plugins").write_text(f"[{','.join(shovel.PLUGINS)}].\n")
    try:
        started = time.perf_counter()
        broker.start()
        console.log(f"broker {broker.node} up in {time.perf_counter() - started:.1f}s (scratch {root})")
        backends = [b.strip() for b in os.environ.get("FED_BENCH_BACKENDS", "sqlite,postgresql").split(",")
                    if b.strip()]
        yield Context(broker=broker, root=root, backends=backends)
    finally:
        broker.stop()
        if keep:
            console.log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwind: stop daemons and the broker, drop PostgreSQL databases


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def table(results: list[Result]) -> Table:
    grid = Table(title=f"federationd benchmarks (FED_BENCH_SCALE={scale():g})", show_lines=False)
    for name, justify in (("benchmark", "left"), ("db", "left"), ("what", "left"), ("federationd", "right"),
                          ("baseline", "right"), ("unit", "left"), ("ratio", "right"), ("goal", "left"),
                          ("met", "center"), ("note", "left")):
        grid.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in results:
        met = {True: "[green]met[/]", False: "[red]NOT met[/]", None: "-"}[r.met]
        grid.add_row(r.bench, r.backend, r.metric, _fmt(r.value), _fmt(r.baseline), r.unit,
                     f"{r.ratio:.2f}x" if r.ratio is not None else "-", r.goal, met, r.note)
    return grid


def _git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
                             cwd=Path(__file__).resolve().parents[1])
        return out.stdout.strip() or None
    return None


def main() -> int:
    only = {name.strip() for name in os.environ.get("FED_BENCH_ONLY", "").split(",") if name.strip()}
    signal.signal(signal.SIGTERM, _terminate)
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    load_before = os.getloadavg()
    results: list[Result] = []
    errors: list[dict[str, str]] = []
    timings: dict[str, float] = {}
    keep = os.environ.get("FED_BENCH_KEEP") == "1"
    pg = None
    with session(keep) as ctx:
        for name, bench, backends in PLAN:
            if only and name not in only:
                continue
            for backend in backends:
                if backend not in ctx.backends:
                    continue
                if backend == "postgresql":
                    pg = pg_reachable() if pg is None else pg
                    if not pg:
                        console.log(f"[yellow]{name} on postgresql skipped: PostgreSQL not reachable[/]")
                        continue
                label = f"{name}/{backend}"
                console.rule(label)
                t0 = time.perf_counter()
                try:
                    got = bench(ctx, backend)
                except Exception as exc:  # noqa: BLE001 - one failed benchmark must not stop the others
                    console.log(f"[red]{label} failed: {exc}[/]")
                    traceback.print_exc()
                    errors.append({"benchmark": label, "error": f"{type(exc).__name__}: {exc}"})
                    got = [Result(name, backend, "FAILED", note=f"{type(exc).__name__}: {str(exc)[:120]}")]
                timings[label] = time.perf_counter() - t0
                results.extend(got)
                console.print(table(got))
                console.log(f"{label} took {timings[label]:.0f}s")
    elapsed = time.perf_counter() - started
    console.print(table(results))
    report = {
        "started_at": started_at.isoformat(), "seconds": elapsed, "scale": scale(),
        "idle_seconds": env_float("FED_BENCH_IDLE_SECONDS", 60.0), "git_commit": _git_commit(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "timings_seconds": timings, "results": [r.as_json() for r in results], "errors": errors,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    console.log(f"results saved to {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}; "
                f"whole run {elapsed / 60:.1f} min")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
