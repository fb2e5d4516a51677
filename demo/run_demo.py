"""The demo: a real Airflow runs the example DAGs against the local Clarifai emulator.

1. Starts a real Airflow 3 (scheduler, triggerer, DAG processor, API server; LocalExecutor; a fresh SQLite
   metadata DB) serving ``example_dags/``, with the ``clarifai_default`` connection pointing at the
   emulator, then the emulator (its own process; emulated time runs 10x faster than real time).
2. Tests a ``clarifai_emulator`` connection kept in the metadata DB, the way the UI's Test button does.
3. Triggers the maintenance-window DAG through the REST API: it pauses every queued or running run,
   waits out a short window in the triggerer, and resumes exactly the runs it paused.
4. Triggers the gating DAG: a deferrable sensor waits for a run to complete, then downstream tasks run.
   On Airflow 3 that run's completion also starts the event-driven example (an asset watcher running
   ``ClarifaiPipelineRunEventTrigger``), with the run in its asset event; no task waited for it.
5. Prints what happened (runs paused and resumed, task states, timings), then stops everything, or,
   with ``--keep``, leaves Airflow and the emulator running and says how to reach and stop them.

While it waits it says what for and for how long. If something fails it stops, says what failed, prints
the last lines of the component's log, and keeps the folder with every log. Run it through
``scripts/demo.sh [--keep] [--port N]``, which installs everything first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from demo.local_airflow import LocalAirflow, airflow_major, free_port

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "emulator-pat-0123456789"  # the demo scenario's fake token: it opens only the local emulator
VERSION = ("demo-user", "pipelines-app", "nightly-training", "v1")
SCENARIO = Path(__file__).with_name("scenario.yaml")
TIME_SCALE = 10
WINDOW_SECONDS = 15
GATED_RUN = "eval-nightly"
#: Seconds between two "still waiting" lines.
PROGRESS_EVERY = 10
#: Lines of a log printed when its component failed.
TAIL_LINES = 25
#: The example scheduled on a Clarifai run's end (asset watchers exist from Airflow 3).
EVENT_DRIVEN = ("example_clarifai_on_run_completed",) if airflow_major() >= 3 else ()


class DemoFailure(Exception):
    """Something the demo waited for did not happen; ``logs`` names the logs that tell why."""

    def __init__(self, message: str, logs: Sequence[Path] = ()) -> None:
        super().__init__(message)
        self.logs = list(logs)


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    if not path.exists():
        return "    (no log written)"
    text = path.read_text(errors="replace").rstrip().splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in text) or "    (empty)"


def port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Demo:
    """The demo's processes, its folder, and waits that report progress and notice dead processes."""

    def __init__(self, workdir: Path, port: int | None) -> None:
        self.workdir = workdir
        self.emulator_port = free_port()
        self.emulator_address = f"127.0.0.1:{self.emulator_port}"
        self.emulator: subprocess.Popen[bytes] | None = None
        self.emulator_log = workdir / "emulator.log"
        connection = json.dumps(
            {"conn_type": "clarifai", "host": f"http://{self.emulator_address}", "password": TOKEN}
        )
        os.environ["AIRFLOW_CONN_CLARIFAI_DEFAULT"] = connection
        os.environ["AIRFLOW_HOME"] = str(workdir / "airflow")
        # No example has a time schedule: the demo triggers each DAG itself, once. The scheduler still
        # makes DAG runs from asset events (the event-driven example), so its job schedule stays on.
        self.airflow = LocalAirflow(
            workdir / "airflow",
            ROOT / "example_dags",
            {
                "AIRFLOW_CONN_CLARIFAI_DEFAULT": connection,
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                # The event-driven example polls every 2 s here, not every 30 s.
                "CLARIFAI_EXAMPLE_POLL_SECONDS": "2",
            },
            port=port,
        )

    # Logs ---------------------------------------------------------------------------------------

    def log(self, component: str) -> Path:
        return self.emulator_log if component == "emulator" else self.airflow.home / f"{component}.log"

    def task_logs(self, dag_id: str, run_id: str) -> list[Path]:
        """The task logs of one DAG run, newest last."""
        folder = self.airflow.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
        return sorted(folder.glob("task_id=*/*.log"), key=lambda path: path.stat().st_mtime)

    # Waiting ------------------------------------------------------------------------------------

    def check_alive(self) -> None:
        for component, code in self.airflow.exited().items():
            raise DemoFailure(f"Airflow's {component} exited (exit code {code})", [self.log(component)])
        if self.emulator is not None and (code := self.emulator.poll()) is not None:
            raise DemoFailure(f"the emulator exited (exit code {code})", [self.emulator_log])

    def wait(
        self,
        what: str,
        predicate: Callable[[], Any],
        timeout: float,
        suspects: Sequence[str],
        status: Callable[[], str] | None = None,
        interval: float = 1.0,
    ) -> Any:
        """Poll ``predicate`` until it returns something truthy, saying every so often what it waits for.

        :param what: what is awaited, for the progress lines and the failure.
        :param predicate: returns the awaited value, or something falsy.
        :param timeout: seconds before giving up.
        :param suspects: the components whose logs tell why, should it time out.
        :param status: more to say in each progress line (task states, for example).
        :param interval: seconds between two polls.
        """
        started = time.monotonic()
        next_report = started + PROGRESS_EVERY
        while True:
            self.check_alive()
            try:
                value = predicate()
            except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
                value, problem = None, f"; last answer: {err}"
            else:
                problem = ""
            if value:
                return value
            now = time.monotonic()
            if now - started > timeout:
                raise DemoFailure(
                    f"timed out after {timeout:.0f} s waiting for {what}{problem}",
                    [self.log(component) for component in suspects],
                )
            if now >= next_report:
                more = f"; {status()}" if status is not None else ""
                print(f"  ... waiting for {what}: {now - started:.0f} s so far{more}", flush=True)
                next_report = now + PROGRESS_EVERY
            time.sleep(interval)

    # Steps --------------------------------------------------------------------------------------

    def start_airflow(self) -> None:
        print("Creating the metadata DB ...", flush=True)
        try:
            self.airflow.migrate()
        except subprocess.CalledProcessError as err:
            (self.airflow.home / "db-migrate.log").write_bytes((err.stdout or b"") + (err.stderr or b""))
            raise DemoFailure("airflow db migrate failed", [self.airflow.home / "db-migrate.log"]) from None
        components = self.airflow.components()
        print(f"Starting Airflow ({', '.join(components)}) ...", flush=True)
        for component in components:
            self.airflow.start(component)
        self.wait("the Airflow API server to answer", self.airflow._api_up, 180, ["api-server"])

    def start_emulator(self) -> None:
        ready = self.workdir / "emulator.address"
        self.emulator = subprocess.Popen(
            [
                *(sys.executable, "-m", "airflow_provider_clarifai.emulator"),
                *("--port", str(self.emulator_port), "--scenario", str(SCENARIO)),
                *("--time-scale", str(TIME_SCALE), "--ready-file", str(ready)),
            ],
            stdout=self.emulator_log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait("the emulator to listen", ready.exists, 30, ["emulator"], interval=0.2)

    def wait_for_dag(self, dag_id: str) -> None:
        def parsed() -> bool:
            try:
                self.airflow.request("GET", f"/dags/{dag_id}")
            except urllib.error.HTTPError:
                return False
            return True

        self.wait(f"the DAG processor to parse {dag_id}", parsed, 120, ["dag-processor", "scheduler"])
        self.airflow.request("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def task_summary(self, dag_id: str, run_id: str) -> str:
        try:
            tasks = self.airflow.task_instances(dag_id, run_id)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return "the API server did not answer"
        return "tasks: " + ", ".join(f"{task_id} {ti['state'] or 'none'}" for task_id, ti in tasks.items())

    def wait_for_dag_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        def finished() -> str | None:
            state = self.airflow.dag_run_state(dag_id, run_id)
            return state if state in ("success", "failed") else None

        try:
            state = str(
                self.wait(
                    f"{dag_id} to finish",
                    finished,
                    timeout,
                    ["scheduler", "triggerer"],
                    status=lambda: self.task_summary(dag_id, run_id),
                )
            )
        except DemoFailure as failure:
            failure.logs.extend(self.task_logs(dag_id, run_id)[-1:])
            raise
        return state

    def add_ui_connection(self) -> str:
        """A ``clarifai_emulator`` connection in the metadata DB (listed in the UI), tested as the UI's
        Test button tests it; returns the test's message.

        :raises DemoFailure: the test failed.
        """
        body = {
            "connection_id": "clarifai_emulator",
            "conn_type": "clarifai",
            "description": "The demo's local Clarifai emulator (fake token).",
            "host": "http://127.0.0.1",
            "port": self.emulator_port,
            "password": TOKEN,
        }
        self.airflow.request("POST", "/connections", body)
        answer = self.airflow.request(
            "POST", "/connections/test", {**body, "description": "", "password": "***", "login": ""}
        )
        if answer.get("status") is not True:
            raise DemoFailure(f"the connection test failed: {answer.get('message')}", [self.emulator_log])
        return str(answer.get("message"))

    def stop(self) -> None:
        self.airflow.stop_all()
        if self.emulator is not None and self.emulator.poll() is None:
            self.emulator.send_signal(signal.SIGINT)
            try:
                self.emulator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.emulator.kill()
                self.emulator.wait(timeout=10)


# What the demo prints -----------------------------------------------------------------------------


def run_states(hook: Any) -> dict[str, str]:
    user_id, app_id, pipeline_id, version_id = VERSION
    ids = hook.resolve_ids(
        user_id=user_id, app_id=app_id, pipeline_id=pipeline_id, pipeline_version_id=version_id
    )
    return {run.run_id: run.status_name for run in sorted(hook.list_runs(ids), key=lambda r: r.run_id)}


def xcom(airflow: LocalAirflow, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
    path = f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/{task_id}/xcomEntries/{key}"
    try:
        return airflow.request("GET", path).get("value")
    except urllib.error.HTTPError:
        return None


def print_dag_run(airflow: LocalAirflow, dag_id: str, run_id: str, state: str, started: float) -> None:
    print(f"\n{dag_id}: {state} in {time.monotonic() - started:.0f} s")
    for task_id, ti in sorted(
        airflow.task_instances(dag_id, run_id).items(), key=lambda kv: kv[1]["start_date"] or ""
    ):
        print(f"  {task_id:24} {ti['state']:10} {ti.get('duration') or 0:6.1f} s")


def print_states(title: str, before: dict[str, str], after: dict[str, str]) -> None:
    print(f"\n{title}")
    for run_id in sorted(after):
        marker = "" if before.get(run_id) == after[run_id] else "   <- changed"
        print(f"  {run_id:16} {before.get(run_id, '-'):22} -> {after[run_id]}{marker}")


def print_failure(demo: Demo, message: str, logs: Sequence[Path]) -> None:
    print(f"\nDemo FAILED: {message}.", flush=True)
    for path in logs:
        print(f"\nLast lines of {path}:\n{tail(path)}")
    print(f"\nEvery log is kept in {demo.workdir}:")
    print(f"  {demo.airflow.home}/<component>.log   Airflow's processes")
    print(f"  {demo.airflow.home}/logs/             task logs (dag_id=.../run_id=.../task_id=...)")
    print(f"  {demo.emulator_log}   the emulator")


def print_keep(demo: Demo) -> None:
    airflow = demo.airflow
    env_file = demo.workdir / "airflow-env.sh"
    env_file.write_text(airflow.env_script())
    ui = f"http://127.0.0.1:{airflow.port}/"
    print(
        f"""
Airflow and the emulator keep running (--keep):
  Airflow UI        {ui}
  Login             none: every visitor is an admin of this local Airflow (simple auth manager)
  REST API          {airflow.api}
  Emulator          {demo.emulator_address}, fake token {TOKEN} (opens only this emulator)
  Connections       clarifai_default: an environment variable of the Airflow processes (not listed in
                    the UI); clarifai_emulator: in the metadata DB, under Admin > Connections (press Test)
  Try               trigger example_clarifai_start_and_monitor (its run ends after about 35 s; the
                    task logs show the run's URL and log lines), or example_clarifai_cancel_running
                    with {{"run_ids": ["train-vit", "no-such-run"]}}
  The airflow CLI   source {env_file}   (then: airflow dags list, airflow tasks states-for-dag-run ...)
  Logs              {demo.workdir}

Press Ctrl-C to stop Airflow and the emulator (the logs folder is removed then).""",
        flush=True,
    )


def wait_for_stop(demo: Demo) -> None:
    """Block until Ctrl-C (or SIGTERM, SIGHUP); report a component that dies meanwhile."""
    stop = []

    def on_signal(signum: int, frame: Any) -> None:
        stop.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    reported: set[str] = set()
    while not stop:
        dead = dict(demo.airflow.exited())
        if demo.emulator is not None and (code := demo.emulator.poll()) is not None:
            dead["emulator"] = code
        for component, code in dead.items():
            if component not in reported:
                reported.add(component)
                print(f"\n{component} exited (exit code {code}); last lines of {demo.log(component)}:")
                print(tail(demo.log(component)), flush=True)
        time.sleep(1)


# The demo -----------------------------------------------------------------------------------------


def run(demo: Demo, started: float) -> bool:
    airflow = demo.airflow
    demo.start_airflow()
    for dag_id in ("example_clarifai_maintenance_window", "example_clarifai_gating", *EVENT_DRIVEN):
        demo.wait_for_dag(dag_id)
    print(f"Airflow is up after {time.monotonic() - started:.0f} s; UI at http://127.0.0.1:{airflow.port}/")
    # The emulator starts once Airflow is up, so the runs' emulated clocks start when the DAGs do.
    demo.start_emulator()
    print(f"Clarifai emulator at {demo.emulator_address} (emulated time runs {TIME_SCALE}x faster)")
    print(f"Connection test, as the UI's Test button runs it: {demo.add_ui_connection()}")

    from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook

    hook = ClarifaiHook()
    before = run_states(hook)
    dag_id = "example_clarifai_maintenance_window"
    dag_started = time.monotonic()
    run_id = airflow.trigger(dag_id, {"window_seconds": WINDOW_SECONDS})
    print(f"\nTriggered {dag_id} ({WINDOW_SECONDS} s window) through the REST API ...", flush=True)
    demo.wait(
        "the window to open (the pause task to finish)",
        lambda: (
            airflow.task_instances(dag_id, run_id).get("wait_for_window_end", {}).get("state")
            in ("deferred", "success", "failed")
        ),
        120,
        ["scheduler", "triggerer"],
        status=lambda: demo.task_summary(dag_id, run_id),
    )
    during = run_states(hook)
    print_states("During the window (the wait is deferred in the triggerer):", before, during)
    state = demo.wait_for_dag_run(dag_id, run_id, timeout=300)
    print_dag_run(airflow, dag_id, run_id, state, dag_started)
    paused = xcom(airflow, dag_id, run_id, "pause_active_runs", "changed_run_ids") or []
    resumed = [r["run_id"] for r in xcom(airflow, dag_id, run_id, "resume_paused_runs") or []]
    exact = sorted(paused) == sorted(resumed)
    print(f"  paused:  {', '.join(paused) or 'none'}")
    print(f"  resumed: {', '.join(resumed) or 'none'}  (exactly the paused ones: {exact})")
    print_states("After the window:", during, run_states(hook))
    if state != "success":
        raise DemoFailure(f"{dag_id} ended {state}", demo.task_logs(dag_id, run_id)[-1:])

    dag_id = "example_clarifai_gating"
    dag_started = time.monotonic()
    gating_run = airflow.trigger(dag_id, {"pipeline_version_run_id": GATED_RUN})
    print(f"\nTriggered {dag_id}: a deferrable sensor waits for {GATED_RUN} ...", flush=True)
    gating_state = demo.wait_for_dag_run(dag_id, gating_run, timeout=300)
    print_dag_run(airflow, dag_id, gating_run, gating_state, dag_started)
    summary = xcom(airflow, dag_id, gating_run, "wait_for_training") or {}
    print(
        f"  {GATED_RUN} ended {summary.get('status')} after "
        f"{summary.get('total_run_duration_seconds')} emulated s of running (paused time excluded)"
    )
    if gating_state != "success":
        raise DemoFailure(f"{dag_id} ended {gating_state}", demo.task_logs(dag_id, gating_run)[-1:])
    if not paused or not exact:
        raise DemoFailure("the maintenance window did not resume exactly the runs it paused")
    if EVENT_DRIVEN:
        show_event_driven(demo, GATED_RUN)
    return True


def show_event_driven(demo: Demo, run_id: str) -> None:
    """The run the gating DAG waited for also started the event-driven example, through its asset."""
    airflow, (dag_id,) = demo.airflow, EVENT_DRIVEN

    def started_by_run() -> str | None:
        for dag_run in airflow.request("GET", f"/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]:
            path = f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(dag_run['dag_run_id'])}/upstreamAssetEvents"
            try:
                events = airflow.request("GET", path)["asset_events"]
            except urllib.error.HTTPError:
                return None  # Airflow 3.3.2 answers 500 while the DAG run is queued without a start date
            if any(event["extra"].get("payload", {}).get("run_id") == run_id for event in events):
                return str(dag_run["dag_run_id"])
        return None

    print(
        f"\n{run_id} completed, so the asset watcher of {dag_id} started it (no task waited) ...", flush=True
    )
    waited = time.monotonic()
    dag_run = demo.wait(f"{dag_id} to start for {run_id}", started_by_run, 120, ["triggerer", "scheduler"])
    state = demo.wait_for_dag_run(dag_id, dag_run, timeout=120)
    print_dag_run(airflow, dag_id, dag_run, state, waited)
    runs = xcom(airflow, dag_id, dag_run, "report_run") or []
    for run in runs:
        print(f"  asset event: run {run['run_id']} {run['state']} at {run['ended_at']}, {run['url']}")
    if state != "success" or run_id not in [run["run_id"] for run in runs]:
        raise DemoFailure(f"{dag_id} ended {state}", demo.task_logs(dag_id, dag_run)[-1:])


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/demo.sh",
        description="Run the example DAGs in a real, local Airflow 3 against the Clarifai emulator.",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave Airflow and the emulator running after the demo, print the UI's URL, and stop at Ctrl-C",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="the Airflow UI and API port (default: 8080 with --keep if it is free, else a free port)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    port = args.port
    if port is None and args.keep and port_is_free(8080):
        port = 8080
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="clarifai-demo-"))
    demo = Demo(workdir, port)
    ok = False
    try:
        ok = run(demo, started)
    except DemoFailure as failure:
        print_failure(demo, str(failure), failure.logs)
    except KeyboardInterrupt:
        print(f"\nInterrupted. The logs are kept in {workdir}.")
    except Exception as err:
        trace = workdir / "demo-error.txt"
        trace.write_text(traceback.format_exc())
        print_failure(demo, f"{type(err).__name__}: {err} (traceback in {trace})", [])
    if ok and args.keep:
        print(f"\nDemo succeeded in {time.monotonic() - started:.0f} s.")
        print_keep(demo)
        wait_for_stop(demo)
        print("\nStopping Airflow and the emulator ...", flush=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave processes behind
    demo.stop()
    if ok:
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"\nStopped Airflow and the emulator. Demo succeeded in {time.monotonic() - started:.0f} s.")
        return 0
    print(f"\nStopped Airflow and the emulator. The logs are kept in {workdir}.")
    return 1


if __name__ == "__main__":
    sys.exit(main())
