"""Burst: N deferrable waits start at once in one event loop, as after a triggerer restart.

Starts the emulator in its own process (its server threads then do not share this process's GIL, like a
remote service) with a generated scenario of N runs in one pipeline version: in every 20 runs, 16 complete
and 3 fail after some emulated seconds, and 1 is already over when the burst starts. Every answer takes
``--latency`` seconds, as over a network. Then, in one asyncio loop and the way Airflow's triggerer does
it, builds N ``ClarifaiPipelineRunTrigger`` objects from their serialized kwargs and runs each in its own
task until its first event.

It measures:

* how long the event loop was blocked: a monitor task sleeps 10 ms again and again and records how late
  each wake-up is (max and 99th percentile), next to the longest pause of Python's garbage collector;
* every trigger's event, checked against its run's script (status, final state, log tail);
* requests in flight: at the client (every RPC the hook sends, counted around its stub) and at the
  service (the emulator's gauge, from its ``--stats-file``), against the hook's bound
  ``ASYNC_MAX_IN_FLIGHT``; the service has more threads than the bound, so it could see more;
* wall time, requests sent and served, requests per second, time to the first and the last event.

Exits 1, saying why, if a trigger did not send its run's event (or raised), if a request failed, if a run
was never read, or if requests in flight exceeded the bound: CI runs it as a check of correctness, which
does not depend on how fast the machine is. The timings (loop blocks, garbage-collector pauses, rates)
vary with the machine's speed and load, so they are printed, not judged; ``--judge-timings`` also judges
them (exit 1 if the loop was blocked for more than 0.2 s outside garbage collection), for a quiet machine.

Usage: python benchmarks/trigger_burst.py [--triggers 1000] [--poll-interval 1] [--time-scale 10]
       [--share-polls] [--judge-timings] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: The requirement: the loop is never blocked for longer than this, outside garbage collection. A timing,
#: so judged only with ``--judge-timings`` (on a quiet machine); always printed.
LOOP_BLOCK_LIMIT = 0.2
TOKEN = "burst-pat-0123456789"
CONN_ID = "clarifai_burst"
USER, APP, PIPELINE, VERSION = "burst-user", "burst-app", "burst-pipeline", "v1"
#: Emulated seconds every scripted run spends queued before it runs.
QUEUED_SECONDS = 5
#: Guards against hangs, not limits: the emulator starts and stops in a second or two.
STARTUP_TIMEOUT = 120.0
SHUTDOWN_TIMEOUT = 60.0
SUCCESS_CODE = 10000


@dataclass(frozen=True)
class BurstSettings:
    """How the burst is run.

    :param triggers: how many triggers start at once.
    :param poll_interval: the triggers' poll interval, in seconds.
    :param time_scale: emulated seconds per real second; scripted runs end 15 to 95 emulated seconds
        after the emulator starts.
    :param latency: seconds the emulator takes to answer each request.
    :param deadline: the triggers' deadline, in seconds from the start of the burst: a guard against a
        burst that never ends, far above its usual 10 to 20 s, so a slow or busy machine never reaches it
        (a trigger that did would send ``timeout`` instead of its run's event, and the check would fail).
    :param tick: the loop monitor's interval, in seconds.
    :param server_workers: the emulator's serving threads: above the bound, so it can see a breach.
    :param share_polls: read run states through the shared watcher (one listing per round) instead of
        each trigger reading its own run; off by default, since the burst measures N concurrent calls
        against the hook's bound on calls in flight (``benchmarks/watch_scale.py`` compares both).
    """

    triggers: int = 1000
    poll_interval: float = 1.0
    time_scale: float = 10.0
    latency: float = 0.05
    deadline: float = 600.0
    tick: float = 0.01
    server_workers: int = 128
    share_polls: bool = False


@dataclass(frozen=True)
class PlannedRun:
    """One run of the scenario and the event its trigger must send.

    :param run_id: the run.
    :param status: its state when the emulator starts.
    :param script: its script in the scenario format, for runs that end during the burst.
    :param event: the event status its trigger must send (``success`` or ``failure``).
    :param final_state: the run's state in that event.
    :param log_tail: log lines a failure event must carry.
    """

    run_id: str
    status: str
    script: dict[str, Any] | None
    event: str
    final_state: str
    log_tail: tuple[str, ...] = ()


def plan_runs(count: int) -> list[PlannedRun]:
    """Runs for the burst: in every 20, 16 complete (80%), 3 fail (15%) and 1 is already over (5%).

    Scripted runs end between 15 and 95 emulated seconds after the emulator starts, spread evenly, so
    events arrive throughout the burst rather than all at once.

    :param count: how many runs.
    """
    over = [("JOB_COMPLETED", "success"), ("JOB_FAILED", "failure"), ("JOB_CANCELLED", "failure")]
    runs = []
    for index in range(count):
        run_id = f"burst-{index:04d}"
        slot = index % 20
        script: dict[str, Any] = {"queued_seconds": QUEUED_SECONDS, "running_seconds": 10 + (index * 37) % 81}
        if slot == 0:
            state, event = over[(index // 20) % len(over)]
            runs.append(PlannedRun(run_id, state, None, event, state))
        elif slot <= 3:
            lines = ("step 1: loading data", f"step 2: {run_id} ran out of memory")
            script["outcome"] = "JOB_FAILED"
            script["logs"] = [{"at": 0, "message": lines[0]}, {"at": 1, "message": lines[1]}]
            runs.append(PlannedRun(run_id, "JOB_QUEUED", script, "failure", "JOB_FAILED", lines))
        else:
            script["outcome"] = "JOB_COMPLETED"
            runs.append(PlannedRun(run_id, "JOB_QUEUED", script, "success", "JOB_COMPLETED"))
    return runs


def expected_events(triggers: int) -> dict[str, int]:
    """How many events of each status the burst's runs must produce."""
    return dict(Counter(run.event for run in plan_runs(triggers)))


def scenario(runs: list[PlannedRun], latency: float) -> dict[str, Any]:
    """The emulator's scenario: ``runs`` in one pipeline version, rate limit off.

    Every answer takes ``latency`` seconds (a ``latency`` fault on every request), as over a network, so
    requests overlap at the service as they do at the client and the service's count of requests in
    flight shows what the client let through. Without it the emulator answers in a fraction of a
    millisecond and never holds more than a handful of requests at once, whatever the client sends.
    """
    specs = []
    for run in runs:
        spec: dict[str, Any] = {"id": run.run_id, "status": run.status}
        if run.script is not None:
            spec["script"] = run.script
        specs.append(spec)
    pipeline = {"id": PIPELINE, "versions": [{"id": VERSION, "runs": specs}]}
    return {
        "rate_limit_per_second": 0,
        "tokens": [{"token": TOKEN, "user_id": USER}],
        "users": [{"id": USER, "apps": [{"id": APP, "pipelines": [pipeline]}]}],
        "faults": [{"kind": "latency", "latency_seconds": latency}] if latency > 0 else [],
    }


@contextlib.contextmanager
def emulator_process(workdir: Path, runs: list[PlannedRun], settings: BurstSettings) -> Iterator[Any]:
    """Serve the scenario from an emulator process; yields ``(host:port, stats)``.

    On exit the emulator is stopped with SIGTERM, and ``stats`` (a dict) is filled from its stats file.
    """
    scenario_file = workdir / "burst-scenario.yaml"
    # JSON is YAML.
    scenario_file.write_text(json.dumps(scenario(runs, settings.latency)), encoding="utf-8")
    ready_file, stats_file = workdir / "emulator-address", workdir / "emulator-stats.json"
    stderr_file = workdir / "emulator-stderr.txt"
    command = [
        *(sys.executable, "-m", "airflow_provider_clarifai.emulator", "--port", "0"),
        *("--scenario", str(scenario_file), "--time-scale", str(settings.time_scale)),
        *("--rate-limit", "0", "--max-workers", str(settings.server_workers)),
        *("--ready-file", str(ready_file), "--stats-file", str(stats_file)),
    ]
    stats: dict[str, Any] = {}
    with open(stderr_file, "w", encoding="utf-8") as stderr:
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while not ready_file.exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the emulator did not start; see {stderr_file}")
                time.sleep(0.02)
            yield ready_file.read_text(encoding="utf-8").strip(), stats
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=SHUTDOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    if server.returncode != 0 or not stats_file.exists():
        raise RuntimeError(
            f"the emulator exited with {server.returncode} and wrote no stats; see {stderr_file}"
        )
    stats.update(json.loads(stats_file.read_text(encoding="utf-8")))


class ClientCounter:
    """Counts the RPCs the hook sends, around its stub: in flight now and at most, by method, by run.

    Only counts: every call goes to the real stub with the same arguments and returns or raises what the
    stub did. Covers the asyncio path only (the burst makes no blocking call).
    """

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.by_method: Counter[str] = Counter()
        self.reads_by_run: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.not_success: Counter[str] = Counter()

    @contextlib.contextmanager
    def installed(self) -> Iterator[ClientCounter]:
        from airflow_provider_clarifai.hooks import _transport

        stub_class = _transport.PipelineRunStub
        original = stub_class.method
        counter = self

        def method(stub: Any, name: str) -> Any:
            rpc = original(stub, name)

            async def counted(request: Any, **kwargs: Any) -> Any:
                counter.by_method[name] += 1
                if name == "GetPipelineVersionRun":
                    counter.reads_by_run[request.pipeline_version_run_id] += 1
                counter.in_flight += 1
                counter.peak = max(counter.peak, counter.in_flight)
                try:
                    response = await rpc(request, **kwargs)
                except BaseException as error:
                    counter.errors[f"{name}: {type(error).__name__}"] += 1
                    raise
                finally:
                    counter.in_flight -= 1
                if response.status.code != SUCCESS_CODE:
                    counter.not_success[f"{name}: {response.status.code}"] += 1
                elif name == "ListPipelineVersionRuns":
                    # The shared watcher reads many runs in one listing: each listed run was read.
                    for run in response.pipeline_version_runs:
                        counter.reads_by_run[run.id] += 1
                return response

            return counted

        stub_class.method = method  # type: ignore[method-assign]
        try:
            yield self
        finally:
            stub_class.method = original  # type: ignore[method-assign]


class LoopMonitor:
    """Wakes up every ``tick`` seconds and records how late each wake-up was, that is how long the loop
    was busy with something else; also records the pauses of Python's garbage collector meanwhile."""

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self.lateness: list[float] = []
        self.gc_pauses: list[float] = []
        #: Each wake-up's lateness minus the garbage collection that happened in the same interval.
        self.lateness_outside_gc: list[float] = []
        self._gc_total = 0.0
        self._gc_started = 0.0
        self._task: asyncio.Task[None] | None = None

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            pause = time.perf_counter() - self._gc_started
            self.gc_pauses.append(pause)
            self._gc_total += pause

    async def _watch(self) -> None:
        while True:
            before, gc_before = time.perf_counter(), self._gc_total
            await asyncio.sleep(self.tick)
            late = time.perf_counter() - before - self.tick
            self.lateness.append(late)
            self.lateness_outside_gc.append(max(0.0, late - (self._gc_total - gc_before)))

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        gc.callbacks.remove(self._on_gc)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclass
class Outcome:
    """What one trigger did: its first event's payload, or what it raised, and when (from the start)."""

    run_id: str
    payload: dict[str, Any] | None = None
    raised: str | None = None
    seconds: float = 0.0


@dataclass
class BurstReport:
    """Everything measured. :func:`problems` judges its correctness, :func:`timing_problems` its timings
    (only with ``--judge-timings``). Times in seconds."""

    settings: BurstSettings
    bound: int
    cold_start: bool
    max_block: float = 0.0
    max_block_outside_gc: float = 0.0
    p99_block: float = 0.0
    longest_gc_pause: float = 0.0
    ticks: int = 0
    wall: float = 0.0
    first_event: float = 0.0
    last_event: float = 0.0
    events: dict[str, int] = field(default_factory=dict)
    wrong_events: list[str] = field(default_factory=list)
    client_peak_in_flight: int = 0
    client_requests: int = 0
    client_by_method: dict[str, int] = field(default_factory=dict)
    client_errors: dict[str, int] = field(default_factory=dict)
    client_not_success: dict[str, int] = field(default_factory=dict)
    reads_per_run: dict[str, float] = field(default_factory=dict)
    runs_never_read: int = 0
    server: dict[str, Any] = field(default_factory=dict)

    @property
    def server_peak_in_flight(self) -> int:
        return int(self.server.get("peak_in_flight", 0))

    @property
    def server_requests(self) -> int:
        return int(self.server.get("requests", 0))

    @property
    def requests_per_second(self) -> float:
        return self.server_requests / self.wall if self.wall else 0.0

    def to_dict(self, judge_timings: bool = False) -> dict[str, Any]:
        """Every figure, what failed the burst (``problems``), the timing limits broken whether judged or
        not (``timing_problems``) and whether they were judged (``timings_judged``)."""
        return {
            **asdict(self),
            "requests_per_second": self.requests_per_second,
            "problems": verdict(self, judge_timings),
            "timing_problems": timing_problems(self),
            "timings_judged": judge_timings,
        }


def check_event(run: PlannedRun, outcome: Outcome) -> str | None:
    """Why ``outcome`` is not the event ``run`` must produce, or ``None`` when it is."""
    from airflow_provider_clarifai.waiting import RunWaitEvent

    if outcome.raised is not None:
        return f"{run.run_id}: raised {outcome.raised}"
    if outcome.payload is None:
        return f"{run.run_id}: no event"
    try:
        event = RunWaitEvent.from_payload(outcome.payload)
    except Exception as error:
        return f"{run.run_id}: invalid event {outcome.payload!r}: {error}"
    got = (event.status.value, event.run_id, (event.run or {}).get("status"), event.error_class)
    if got != (run.event, run.run_id, run.final_state, None):
        return f"{run.run_id}: expected {run.event} in {run.final_state}, got {got[0]}: {event.message}"
    # The emulator writes lines of its own ("run entered JOB_FAILED") around the scripted ones.
    if tuple(line for line in event.log_tail if line in run.log_tail) != run.log_tail:
        return f"{run.run_id}: log tail {event.log_tail!r} lacks {list(run.log_tail)!r}"
    return None


async def burst(runs: list[PlannedRun], settings: BurstSettings) -> tuple[list[Outcome], LoopMonitor, float]:
    """Start one trigger per run at once in this loop; return their outcomes, the monitor, the wall time."""
    from airflow_provider_clarifai.hooks._transport import close_async_endpoints
    from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunTrigger

    ClarifaiPipelineRunTrigger.share_polls = settings.share_polls
    deadline = time.time() + settings.deadline
    # What each task serialized when it deferred; the triggerer rebuilds the triggers from it.
    stored = [
        ClarifaiPipelineRunTrigger(
            clarifai_conn_id=CONN_ID,
            user_id=USER,
            app_id=APP,
            pipeline_id=PIPELINE,
            pipeline_version_id=VERSION,
            run_id=run.run_id,
            poll_interval=settings.poll_interval,
            deadline=deadline,
        ).serialize()[1]
        for run in runs
    ]
    monitor = LoopMonitor(settings.tick)
    monitor.start()
    await asyncio.sleep(settings.tick * 2)  # the monitor is running before the first trigger
    started = time.perf_counter()

    async def first_event(outcome: Outcome, trigger: ClarifaiPipelineRunTrigger) -> None:
        events = trigger.run()
        try:
            outcome.payload = (await events.__anext__()).payload
        except StopAsyncIteration:
            pass
        except Exception as error:
            outcome.raised = f"{type(error).__name__}: {error}"
        finally:
            outcome.seconds = time.perf_counter() - started
            await events.aclose()

    outcomes: list[Outcome] = []
    tasks = []
    try:
        # As Airflow's TriggerRunner.create_triggers: build each trigger in the loop and start its task,
        # yielding to the loop in between.
        for run, kwargs in zip(runs, stored, strict=True):
            await asyncio.sleep(0)
            outcomes.append(Outcome(run.run_id))
            tasks.append(asyncio.create_task(first_event(outcomes[-1], ClarifaiPipelineRunTrigger(**kwargs))))
        await asyncio.gather(*tasks)
        return outcomes, monitor, time.perf_counter() - started
    finally:
        for task in tasks:
            task.cancel()
        await monitor.stop()
        await close_async_endpoints()


@contextlib.contextmanager
def output_to(path: Path | None) -> Iterator[None]:
    """Send this process's stdout and stderr (the triggers' log lines) to ``path`` meanwhile."""
    if path is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(path, "a", encoding="utf-8") as target:
            os.dup2(target.fileno(), 1)
            os.dup2(target.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def run_burst(settings: BurstSettings, workdir: Path, log_path: Path | None = None) -> BurstReport:
    """Run the burst against a fresh emulator process and measure it.

    Sets ``AIRFLOW_CONN_CLARIFAI_BURST`` meanwhile (restored afterwards).

    :param settings: how to run it.
    :param workdir: where the scenario, the emulator's files and the logs go.
    :param log_path: where the triggers' log lines go (default: this process's stdout and stderr).
    """
    from airflow_provider_clarifai.hooks._transport import ASYNC_MAX_IN_FLIGHT

    runs = plan_runs(settings.triggers)
    report = BurstReport(settings=settings, bound=ASYNC_MAX_IN_FLIGHT, cold_start="grpc" not in sys.modules)
    counter = ClientCounter()
    env_name = "AIRFLOW_CONN_" + CONN_ID.upper()
    saved_conn = os.environ.get(env_name)
    try:
        with emulator_process(workdir, runs, settings) as (address, report.server):
            # The emulator's limit is off, and so is the client's budget: the burst measures calls at once.
            conn = {
                "conn_type": "clarifai",
                "host": f"http://{address}",
                "password": TOKEN,
                "extra": json.dumps({"requests_per_second": 0}),
            }
            os.environ[env_name] = json.dumps(conn)
            with counter.installed(), output_to(log_path):
                outcomes, monitor, report.wall = asyncio.run(burst(runs, settings))
    finally:
        if saved_conn is None:
            os.environ.pop(env_name, None)
        else:
            os.environ[env_name] = saved_conn

    lateness = sorted(monitor.lateness) or [0.0]
    report.ticks = len(monitor.lateness)
    report.max_block = lateness[-1]
    report.max_block_outside_gc = max(monitor.lateness_outside_gc, default=0.0)
    report.p99_block = lateness[min(len(lateness) - 1, int(len(lateness) * 0.99))]
    report.longest_gc_pause = max(monitor.gc_pauses, default=0.0)
    times = [outcome.seconds for outcome in outcomes if outcome.payload is not None] or [0.0]
    report.first_event, report.last_event = min(times), max(times)
    report.events = dict(
        Counter(outcome.payload["status"] if outcome.payload else "none" for outcome in outcomes)
    )
    report.wrong_events = [
        why for run, outcome in zip(runs, outcomes, strict=True) if (why := check_event(run, outcome))
    ]
    report.client_peak_in_flight = counter.peak
    report.client_requests = sum(counter.by_method.values())
    report.client_by_method = dict(counter.by_method)
    report.client_errors = dict(counter.errors)
    report.client_not_success = dict(counter.not_success)
    reads = [counter.reads_by_run[run.run_id] for run in runs]
    report.runs_never_read = reads.count(0)
    report.reads_per_run = {"min": min(reads), "mean": statistics.fmean(reads), "max": max(reads)}
    return report


def problems(report: BurstReport) -> list[str]:
    """What breaks correctness, in words; empty when every trigger, request and bound was right.

    Only what does not depend on the machine's speed: events, failed requests, runs never read, requests
    sent against served, requests in flight against the bound (all counts). Timings are
    :func:`timing_problems`.
    """
    found = []
    if report.wrong_events:
        shown = "; ".join(report.wrong_events[:5])
        found.append(f"{len(report.wrong_events)} trigger(s) did not send their run's event: {shown}")
    if report.client_errors or report.client_not_success:
        found.append(f"requests failed: {report.client_errors or report.client_not_success}")
    failed_at_server = {code: n for code, n in report.server.get("by_grpc_code", {}).items() if code != "OK"}
    failed_at_server.update(
        {code: n for code, n in report.server.get("by_code", {}).items() if code != "SUCCESS"}
    )
    if failed_at_server:
        found.append(f"the emulator answered errors: {failed_at_server}")
    if report.runs_never_read:
        found.append(f"{report.runs_never_read} run(s) were never read")
    if report.server_requests != report.client_requests:
        found.append(
            f"the emulator served {report.server_requests} requests, the hook sent {report.client_requests}"
        )
    for side, peak in (("client", report.client_peak_in_flight), ("server", report.server_peak_in_flight)):
        if peak > report.bound:
            found.append(f"{peak} requests in flight at the {side} (bound {report.bound})")
    return found


def timing_problems(report: BurstReport) -> list[str]:
    """The timing limits the burst broke, in words. They depend on the machine's speed and load, so they
    fail the burst only with ``--judge-timings``.

    The limit is on what the loop's own work blocked. A full collection of Python's garbage collector
    walks the whole process (Airflow's and gRPC's objects, not the triggers'); it is printed apart.
    """
    found = []
    if report.max_block_outside_gc > LOOP_BLOCK_LIMIT:
        found.append(
            f"the event loop was blocked for {report.max_block_outside_gc:.3f} s outside garbage collection "
            f"(limit {LOOP_BLOCK_LIMIT} s; with collections {report.max_block:.3f} s)"
        )
    return found


def verdict(report: BurstReport, judge_timings: bool = False) -> list[str]:
    """What fails the burst: its correctness problems, and its timing problems if ``judge_timings``."""
    return problems(report) + (timing_problems(report) if judge_timings else [])


def print_report(report: BurstReport, judge_timings: bool = False) -> None:
    settings = report.settings
    print(
        f"{settings.triggers} triggers started at once in one event loop, against the emulator in its own "
        f"process\n(poll every {settings.poll_interval:g} s, answers take {settings.latency * 1000:g} ms, "
        f"time scale {settings.time_scale:g}, "
        f"{'cold start: gRPC not yet imported' if report.cold_start else 'gRPC already imported'})"
    )
    events = ", ".join(f"{count} {status}" for status, count in sorted(report.events.items()))
    wanted = ", ".join(
        f"{count} {status}" for status, count in sorted(expected_events(settings.triggers).items())
    )
    right = settings.triggers - len(report.wrong_events)
    print(f"events: {events} (scripted: {wanted}); {right} of {settings.triggers} as scripted")

    def header(title: str) -> None:
        print(f"\n{title}\n{'':30} {'measured':>12} {'limit':>8} {'ratio':>6}")

    def row(name: str, measured: str, limit: str = "", ratio: float | None = None) -> None:
        print(f"{name:30} {measured:>12} {limit:>8} {'' if ratio is None else f'{ratio:.2f}':>6}".rstrip())

    header("Correctness (judged: a failure exits 1)")
    bound = str(report.bound)
    row(
        "peak in flight (client)",
        str(report.client_peak_in_flight),
        bound,
        report.client_peak_in_flight / report.bound,
    )
    row(
        "peak in flight (server)",
        str(report.server_peak_in_flight),
        bound,
        report.server_peak_in_flight / report.bound,
    )
    row("requests sent / served", f"{report.client_requests} / {report.server_requests}")
    failed = sum(report.client_errors.values()) + sum(report.client_not_success.values())
    row("requests failed", str(failed), "0")
    row("runs never read", str(report.runs_never_read), "0")

    if judge_timings:
        header("Timings (judged, --judge-timings: a broken limit exits 1)")
    else:
        header("Timings (printed, NOT judged: they depend on the machine's speed and load)")
    limit_ms = f"{LOOP_BLOCK_LIMIT * 1000:.0f} ms"
    row(
        "max loop block, outside GC",
        f"{report.max_block_outside_gc * 1000:.1f} ms",
        limit_ms,
        report.max_block_outside_gc / LOOP_BLOCK_LIMIT,
    )
    row(
        "max loop block, GC included",
        f"{report.max_block * 1000:.1f} ms",
        "",
        report.max_block / LOOP_BLOCK_LIMIT,
    )
    row("p99 loop block", f"{report.p99_block * 1000:.1f} ms", "", report.p99_block / LOOP_BLOCK_LIMIT)
    row("  longest GC pause (Python's)", f"{report.longest_gc_pause * 1000:.1f} ms")
    row("requests per second", f"{report.requests_per_second:.0f}")
    reads = report.reads_per_run
    row("reads per run (min/mean/max)", f"{reads['min']}/{reads['mean']:.1f}/{reads['max']}")
    row("wall time", f"{report.wall:.2f} s")
    row("first event after", f"{report.first_event:.2f} s")
    row("last event after", f"{report.last_event:.2f} s")
    by_method = report.server.get("by_method")
    print(f"\n(the loop monitor woke {report.ticks} times; requests by method: {by_method})")


def conclusion(report: BurstReport, judge_timings: bool = False) -> str:
    """The last lines of the printed report: the verdict, and what was judged."""
    found = verdict(report, judge_timings)
    lines = ["FAILED:", *(f"  {problem}" for problem in found)] if found else []
    if not judge_timings:
        if not found:
            lines.append(
                f"OK: every correctness check held ({report.settings.triggers} triggers, bound "
                f"{report.bound} in flight)."
            )
        lines.append(
            "Timings were printed, not judged: they depend on the machine's speed and load.\n"
            "On a quiet machine, --judge-timings judges them too."
        )
        lines += [f"  not judged: {problem}" for problem in timing_problems(report)]
    elif not found:
        lines.append("OK: every correctness check and timing limit held.")
    return "\n".join(lines)


def exit_status(report: BurstReport, judge_timings: bool = False) -> int:
    """1 if the burst failed (its correctness, or its timings when judged), else 0."""
    return 1 if verdict(report, judge_timings) else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = BurstSettings()
    parser.add_argument("--triggers", type=int, default=defaults.triggers, help="triggers started at once")
    parser.add_argument("--poll-interval", type=float, default=defaults.poll_interval, help="seconds")
    parser.add_argument("--time-scale", type=float, default=defaults.time_scale, help="emulated s per real s")
    parser.add_argument("--latency", type=float, default=defaults.latency, help="the emulator's answer time")
    parser.add_argument(
        "--deadline", type=float, default=defaults.deadline, help="the triggers' deadline (s)"
    )
    parser.add_argument(
        "--judge-timings",
        action="store_true",
        help=(
            "also judge the timings (exit 1 if the loop was blocked for more than "
            f"{LOOP_BLOCK_LIMIT:g} s outside garbage collection); they depend on the machine's speed and "
            "load, so use it on a quiet machine only. Without it they are printed, not judged."
        ),
    )
    parser.add_argument(
        "--share-polls", action="store_true", help="read run states through the shared watcher"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.triggers < 1 or args.poll_interval <= 0 or args.time_scale <= 0 or args.latency < 0:
        parser.error("--triggers, --poll-interval and --time-scale must be positive, --latency 0 or more")
    settings = BurstSettings(
        triggers=args.triggers,
        poll_interval=args.poll_interval,
        time_scale=args.time_scale,
        latency=args.latency,
        deadline=args.deadline,
        share_polls=args.share_polls,
    )
    with tempfile.TemporaryDirectory(prefix="trigger-burst-") as workdir:
        os.environ.setdefault("AIRFLOW_HOME", workdir)
        os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        # What a triggerer process has imported before it runs any trigger: the burst measures the
        # triggers, not Airflow's start-up.
        import airflow.jobs.triggerer_job_runner  # noqa: F401

        report = run_burst(settings, Path(workdir), log_path=Path(workdir) / "trigger-logs.txt")
    if args.json:
        print(json.dumps(report.to_dict(args.judge_timings), indent=2))
    else:
        print_report(report, args.judge_timings)
        print("\n" + conclusion(report, args.judge_timings))
    return exit_status(report, args.judge_timings)


if __name__ == "__main__":
    sys.exit(main())
