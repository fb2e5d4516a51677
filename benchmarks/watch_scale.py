"""Watch many runs from one triggerer within Clarifai's 15 requests/s: shared polls against per-run polls.

For each size (1,000 and 10,000 watched runs by default) spread over 10 pipeline versions, starts the
emulator in its own process with its rate limit on, then runs one ``ClarifaiPipelineRunTrigger`` per run
in one event loop, as a triggerer does, for a number of poll intervals, twice: with the shared run
watcher (the default) and with per-run polling (``share_polls=False``, the behaviour before it). A fifth of
the runs end during the window, at times spread over it; the others keep running.

Time is scaled: the emulator runs ``--time-scale`` emulated seconds per real second, the triggers poll
every ``--interval / --time-scale`` real seconds; the emulator counts its limit of 15 per emulated
second, and the client's request budget is ``15 x time scale`` per real second, i.e. 15 per emulated
second too, as in production. Every figure below is
given in emulated time (requests per emulated second, latencies in poll intervals) unless it says real.

Printed, side by side, per size and mode:

* requests per emulated second sent, and throttled answers (CONN_THROTTLED) received;
* detection latency p50 and p99, in poll intervals: from the run's end in the emulator (its ``ended_at``)
  to the trigger's event, both on the emulated clock (calibrated by cancelling a run at a known instant);
* CPU seconds of this process per watched run per interval, and RSS added per watched run;
* the longest pause of Python's garbage collector, and the longest loop stall (GC included).

It judges nothing about timings (CI never runs it); it exits 1 only if a trigger sent a wrong event.

Usage: python benchmarks/watch_scale.py [--runs 1000,10000] [--versions 10] [--interval 60]
       [--intervals 5] [--time-scale 20] [--modes shared,per-run] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trigger_burst import ClientCounter, LoopMonitor, output_to

TOKEN = "watch-pat-0123456789"
CONN_ID = "clarifai_watch"
USER, APP, PIPELINE = "watch-user", "watch-app", "watch-pipeline"
CALIBRATION_VERSION, CALIBRATION_RUN = "calibration", "calibration-run"
#: Clarifai's documented limit per user.
LIMIT_PER_SECOND = 15
THROTTLED = 11005
#: Guards against hangs, not limits.
STARTUP_TIMEOUT = 300.0
SHUTDOWN_TIMEOUT = 60.0


@dataclass(frozen=True)
class Settings:
    """One measurement.

    :param runs: watched runs.
    :param versions: pipeline versions they are spread over.
    :param interval: the triggers' poll interval, in emulated seconds.
    :param intervals: how many intervals the measurement lasts.
    :param time_scale: emulated seconds per real second.
    :param shared: shared watcher (``True``) or per-run polling.
    """

    runs: int
    versions: int
    interval: float
    intervals: int
    time_scale: float
    shared: bool

    @property
    def real_interval(self) -> float:
        return self.interval / self.time_scale

    @property
    def real_rate_limit(self) -> int:
        return int(LIMIT_PER_SECOND * self.time_scale)


def ends_at(index: int, settings: Settings) -> float | None:
    """Emulated seconds after the start at which run ``index`` ends, or ``None`` if it keeps running.

    One run in five ends, spread evenly from the end of the first interval to two intervals before the
    measurement ends, so that each ending has two intervals to be detected in.
    """
    if index % 5:
        return None
    first, last = settings.interval, settings.interval * (settings.intervals - 2)
    ending = index // 5
    endings = max(settings.runs // 5, 1)
    return first + (last - first) * ending / endings


def version_of(index: int, settings: Settings) -> str:
    return f"v{index % settings.versions:02d}"


def scenario(settings: Settings) -> dict[str, Any]:
    versions: dict[str, list[dict[str, Any]]] = {
        version_of(i, settings): [] for i in range(settings.versions)
    }
    for index in range(settings.runs):
        end = ends_at(index, settings)
        script = (
            {"running_seconds": None} if end is None else {"running_seconds": end, "outcome": "JOB_COMPLETED"}
        )
        versions[version_of(index, settings)].append(
            {"id": f"run-{index:05d}", "status": "JOB_RUNNING", "script": script}
        )
    specs = [{"id": version, "runs": runs} for version, runs in versions.items()]
    specs.append(
        {
            "id": CALIBRATION_VERSION,
            "runs": [{"id": CALIBRATION_RUN, "status": "JOB_RUNNING", "script": {"running_seconds": None}}],
        }
    )
    return {
        "tokens": [{"token": TOKEN, "user_id": USER}],
        "users": [{"id": USER, "apps": [{"id": APP, "pipelines": [{"id": PIPELINE, "versions": specs}]}]}],
    }


@contextlib.contextmanager
def emulator_process(workdir: Path, settings: Settings) -> Iterator[str]:
    scenario_file = workdir / "watch-scenario.yaml"
    scenario_file.write_text(json.dumps(scenario(settings)), encoding="utf-8")  # JSON is YAML
    ready_file, stderr_file = workdir / "emulator-address", workdir / "emulator-stderr.txt"
    ready_file.unlink(missing_ok=True)
    command = [
        *(sys.executable, "-m", "airflow_provider_clarifai.emulator", "--port", "0"),
        *("--scenario", str(scenario_file), "--time-scale", str(settings.time_scale)),
        # The emulator counts its limit per emulated second when time is scaled.
        *("--rate-limit", str(LIMIT_PER_SECOND), "--max-workers", "64"),
        *("--ready-file", str(ready_file)),
    ]
    with open(stderr_file, "w", encoding="utf-8") as stderr:
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            give_up = time.monotonic() + STARTUP_TIMEOUT
            while not ready_file.exists():
                if server.poll() is not None or time.monotonic() > give_up:
                    raise RuntimeError(f"the emulator did not start; see {stderr_file}")
                time.sleep(0.05)
            yield ready_file.read_text(encoding="utf-8").strip()
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=SHUTDOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Result:
    """What one measurement found (emulated time unless named real)."""

    runs: int
    mode: str
    requests: int = 0
    requests_per_second: float = 0.0
    throttled: int = 0
    by_method: dict[str, int] = field(default_factory=dict)
    events: int = 0
    expected_events: int = 0
    #: Runs that ended in the window but were not detected before it closed (late, not wrong).
    missed: int = 0
    wrong_events: list[str] = field(default_factory=list)
    latency_p50_intervals: float | None = None
    latency_p99_intervals: float | None = None
    cpu_seconds_per_run_per_interval: float = 0.0
    rss_bytes_per_run: float = 0.0
    longest_gc_pause: float = 0.0
    longest_loop_stall: float = 0.0


async def calibrate(settings: Settings) -> tuple[float, float]:
    """A (real wall time, emulated time) pair: cancel a run and read its ``ended_at``."""
    from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
    from airflow_provider_clarifai.ids import PipelineVersionIds

    hook = ClarifaiHook(CONN_ID)
    ids = PipelineVersionIds(USER, APP, PIPELINE, CALIBRATION_VERSION)
    before = time.time()
    await hook.aset_runs_status(ids, [CALIBRATION_RUN], "cancel")
    after = time.time()
    run = await hook.aget_run(ids, CALIBRATION_RUN)
    if run.ended_at is None:
        raise RuntimeError("the emulator reports no ended_at: cannot measure detection latency")
    return (before + after) / 2, run.ended_at.timestamp()


async def watch(settings: Settings, result: Result) -> None:
    from airflow_provider_clarifai.hooks._transport import close_async_endpoints
    from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunTrigger
    from airflow_provider_clarifai.waiting import RunWaitEvent

    ClarifaiPipelineRunTrigger.share_polls = settings.shared
    real_at, emulated_at = await calibrate(settings)

    def emulated(real: float) -> float:
        return emulated_at + (real - real_at) * settings.time_scale

    window = settings.intervals * settings.real_interval
    triggers = [
        ClarifaiPipelineRunTrigger(
            **ClarifaiPipelineRunTrigger(
                clarifai_conn_id=CONN_ID,
                user_id=USER,
                app_id=APP,
                pipeline_id=PIPELINE,
                pipeline_version_id=version_of(index, settings),
                run_id=f"run-{index:05d}",
                poll_interval=settings.real_interval,
                deadline=time.time() + window + 3600,
            ).serialize()[1]
        )
        for index in range(settings.runs)
    ]
    gc.collect()
    monitor = LoopMonitor(0.01)
    monitor.start()
    rss_before, cpu_before = rss_bytes(), time.process_time()
    latencies: list[float] = []

    async def first_event(trigger: ClarifaiPipelineRunTrigger) -> None:
        async for fired in trigger.run():
            received = time.time()
            event = RunWaitEvent.from_payload(fired.payload)
            result.events += 1
            ended = (event.run or {}).get("ended_at")
            if event.status.value != "success" or ended is None:
                result.wrong_events.append(f"{event.run_id}: {event.status.value}: {event.message}")
            else:
                latency = emulated(received) - datetime.fromisoformat(ended).timestamp()
                latencies.append(latency / settings.interval)
            return

    tasks = [asyncio.create_task(first_event(trigger)) for trigger in triggers]
    await asyncio.sleep(window / 2)
    rss_middle = rss_bytes()
    await asyncio.sleep(window / 2)
    cpu = time.process_time() - cpu_before
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await monitor.stop()
    await close_async_endpoints()
    result.cpu_seconds_per_run_per_interval = cpu / settings.runs / settings.intervals
    result.rss_bytes_per_run = (rss_middle - rss_before) / settings.runs
    result.longest_gc_pause = max(monitor.gc_pauses, default=0.0)
    result.longest_loop_stall = max(monitor.lateness, default=0.0)
    if latencies:
        ordered = sorted(latencies)
        result.latency_p50_intervals = statistics.median(ordered)
        result.latency_p99_intervals = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def measure(settings: Settings, workdir: Path) -> Result:
    result = Result(runs=settings.runs, mode="shared" if settings.shared else "per-run")
    result.expected_events = sum(ends_at(i, settings) is not None for i in range(settings.runs))
    counter = ClientCounter()
    env_name = "AIRFLOW_CONN_" + CONN_ID.upper()
    with emulator_process(workdir, settings) as address:
        extra = {"requests_per_second": settings.real_rate_limit}
        os.environ[env_name] = json.dumps(
            {
                "conn_type": "clarifai",
                "host": f"http://{address}",
                "password": TOKEN,
                "extra": json.dumps(extra),
            }
        )
        started = time.monotonic()
        with counter.installed(), output_to(workdir / "trigger-logs.txt"):
            asyncio.run(watch(settings, result))
        real_seconds = time.monotonic() - started
    result.by_method = dict(counter.by_method)
    result.requests = sum(counter.by_method.values())
    result.requests_per_second = result.requests / (real_seconds * settings.time_scale)
    result.throttled = sum(n for key, n in counter.not_success.items() if key.endswith(f": {THROTTLED}"))
    result.missed = result.expected_events - result.events
    return result


def print_table(results: list[Result], settings: list[Settings]) -> None:
    first = settings[0]
    print(
        f"Watched runs over {first.versions} versions, poll interval {first.interval:g} s (emulated), "
        f"{first.intervals} intervals, time scaled x{first.time_scale:g}; limit {LIMIT_PER_SECOND} requests "
        "per emulated second at the emulator and in the client's budget."
    )
    columns = (
        "runs",
        "mode",
        "req/s",
        "thrott.",
        "missed",
        "p50",
        "p99",
        "CPU ms",
        "RSS KB",
        "GC ms",
        "stall",
    )
    header = " ".join(f"{name:>8}" for name in columns)
    print(header)
    print("-" * len(header))
    for result in results:
        p50, p99 = (
            "-" if value is None else f"{value:.2f}"
            for value in (result.latency_p50_intervals, result.latency_p99_intervals)
        )
        cells = (
            result.runs,
            result.mode,
            f"{result.requests_per_second:.1f}",
            result.throttled,
            result.missed,
            p50,
            p99,
            f"{result.cpu_seconds_per_run_per_interval * 1000:.3f}",
            f"{result.rss_bytes_per_run / 1024:.1f}",
            f"{result.longest_gc_pause * 1000:.0f}",
            f"{result.longest_loop_stall * 1000:.0f}",
        )
        print(" ".join(f"{cell:>8}" for cell in cells))
    print(
        "\nreq/s: requests per emulated second sent (limit 15); thrott.: CONN_THROTTLED answers; missed: "
        "runs that ended in the window but were not detected before it closed; p50/p99: detection latency "
        "in poll intervals; CPU ms: this process's CPU per watched run per interval; RSS KB: memory added "
        "per watched run; GC ms: longest garbage-collector pause; stall: longest loop stall (GC included), "
        "real ms."
    )
    for result in results:
        if result.wrong_events:
            shown = result.wrong_events[:3]
            print(f"\n{result.runs} {result.mode}: {len(result.wrong_events)} wrong event(s): {shown}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", default="1000,10000", help="watched runs, comma-separated sizes")
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--interval", type=float, default=60.0, help="poll interval, emulated seconds")
    parser.add_argument("--intervals", type=int, default=5, help="how many intervals to measure")
    parser.add_argument("--time-scale", type=float, default=20.0, help="emulated seconds per real second")
    parser.add_argument("--modes", default="shared,per-run", help="shared, per-run, or both")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    modes = [mode.strip() for mode in args.modes.split(",")]
    if not set(modes) <= {"shared", "per-run"} or args.intervals < 4:
        parser.error("--modes takes shared and per-run; --intervals must be 4 or more")
    plans = [
        Settings(int(size), args.versions, args.interval, args.intervals, args.time_scale, mode == "shared")
        for size in args.runs.split(",")
        for mode in modes
    ]
    results = []
    with tempfile.TemporaryDirectory(prefix="watch-scale-") as workdir:
        os.environ.setdefault("AIRFLOW_HOME", workdir)
        os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        import airflow.jobs.triggerer_job_runner  # noqa: F401  (what a triggerer has imported)

        resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
        for plan in plans:
            print(
                f"measuring {plan.runs} runs, {'shared' if plan.shared else 'per-run'} ...", file=sys.stderr
            )
            results.append(measure(plan, Path(workdir)))
    if args.json:
        print(json.dumps([asdict(result) for result in results], indent=2))
    else:
        print_table(results, plans)
    return 1 if any(result.wrong_events for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
