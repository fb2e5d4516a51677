"""A real, local Airflow: its own processes, its own metadata DB, talking over its REST API.

Used by the demo and by the end-to-end tests. It starts what a deployment runs (scheduler, triggerer,
DAG processor and API server on Airflow 3; scheduler, triggerer and webserver on Airflow 2), each as
its own process group, so any one of them can be killed and started again, and stops every process it
started. LocalExecutor on Airflow 3 (SQLite is allowed there); SequentialExecutor on Airflow 2, where
SQLite allows nothing else.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

AIRFLOW_BIN = Path(sys.executable).with_name("airflow")


def airflow_major() -> int:
    out = subprocess.run([str(AIRFLOW_BIN), "version"], capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1].split(".")[0])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class LocalAirflow:
    """A throw-away Airflow installation under ``home`` serving the DAGs in ``dags_folder``.

    :param home: AIRFLOW_HOME (created).
    :param dags_folder: the DAG folder.
    :param extra_env: more environment (connections, config) for every Airflow process.
    :param port: the API server's (webserver's) port; a free one by default.
    """

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        extra_env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.home = home
        self.dags_folder = dags_folder
        self.major = airflow_major()
        self.port = port or free_port()
        #: The environment this object adds to its own for every Airflow process (see :meth:`env_script`).
        self.own_env: dict[str, str] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        home.mkdir(parents=True, exist_ok=True)
        own = {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            **(extra_env or {}),
        }
        if self.major >= 3:
            own.update(
                {
                    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                    "AIRFLOW__API__PORT": str(self.port),
                    "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
                    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                }
            )
        else:
            own.update(
                {
                    "AIRFLOW__CORE__EXECUTOR": "SequentialExecutor",
                    "AIRFLOW__API__AUTH_BACKENDS": (
                        "airflow.providers.fab.auth_manager.api.auth.backend.basic_auth"
                    ),
                    "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(self.port),
                    "AIRFLOW__WEBSERVER__WORKERS": "1",
                    "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "5",
                }
            )
        self.own_env = own
        path = f"{AIRFLOW_BIN.parent}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = {**os.environ, **own, "PATH": path}

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/{'v2' if self.major >= 3 else 'v1'}"

    def components(self) -> list[str]:
        if self.major >= 3:
            return ["api-server", "dag-processor", "scheduler", "triggerer"]
        return ["webserver", "scheduler", "triggerer"]

    # Processes -----------------------------------------------------------------------------------

    def migrate(self) -> None:
        subprocess.run([str(AIRFLOW_BIN), "db", "migrate"], env=self.env, check=True, capture_output=True)
        if self.major < 3:
            # Airflow 2's REST API needs a user: a local admin for this throw-away installation.
            user = [
                "--username",
                "admin",
                "--password",
                "admin",
                "--role",
                "Admin",
                "--email",
                "admin@localhost",
            ]
            subprocess.run(
                [str(AIRFLOW_BIN), "users", "create", *user, "--firstname", "Local", "--lastname", "Admin"],
                env=self.env,
                check=True,
                capture_output=True,
            )

    def start(self, component: str) -> None:
        """Start one component in its own process group, logging to ``home/<component>.log``."""
        if component in self.processes and self.processes[component].poll() is None:
            raise RuntimeError(f"{component} is already running")
        log = (self.home / f"{component}.log").open("ab")
        args = [str(AIRFLOW_BIN), component]
        if component in ("api-server", "webserver"):
            args += ["--port", str(self.port)]
        self.processes[component] = subprocess.Popen(
            args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self, component: str, sig: int = signal.SIGKILL) -> None:
        """Stop one component and every process it spawned."""
        process = self.processes.pop(component, None)
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def start_all(self, timeout: float = 180) -> None:
        self.migrate()
        for component in self.components():
            self.start(component)
        wait_until(self._api_up, timeout, "the Airflow API")

    def stop_all(self) -> None:
        """Stop everything this object started (SIGINT first, as Airflow expects, then SIGKILL)."""
        for component in list(self.processes):
            self.kill(component, signal.SIGINT)

    def __enter__(self) -> LocalAirflow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def log_of(self, component: str) -> str:
        path = self.home / f"{component}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def exited(self) -> dict[str, int]:
        """The components this object started that have exited since, with their exit codes."""
        return {
            component: code
            for component, process in self.processes.items()
            if (code := process.poll()) is not None
        }

    def env_script(self) -> str:
        """``export`` lines that point the ``airflow`` CLI at this installation (for ``source``)."""
        import shlex

        lines = [f"export {name}={shlex.quote(value)}" for name, value in sorted(self.own_env.items())]
        lines.append(f'export PATH={shlex.quote(str(AIRFLOW_BIN.parent))}:"$PATH"')
        return "\n".join(lines) + "\n"

    # REST API ------------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        # Only ever our own http://127.0.0.1 API server.
        headers = {"Content-Type": "application/json"}
        if self.major < 3:
            headers["Authorization"] = "Basic " + base64.b64encode(b"admin:admin").decode()
        request = urllib.request.Request(self.api + path, data=data, method=method, headers=headers)  # noqa: S310
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read() or b"null")

    def _api_up(self) -> bool:
        try:
            self.request("GET", "/dags")
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False
        return True

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        def parsed() -> bool:
            try:
                self.request("GET", f"/dags/{dag_id}")
            except urllib.error.HTTPError:
                return False
            return True

        wait_until(parsed, timeout, f"DAG {dag_id} to be parsed")
        self.request("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        body: dict[str, Any] = {"conf": dict(conf or {})}
        if self.major >= 3:
            body["logical_date"] = None
        return str(self.request("POST", f"/dags/{dag_id}/dagRuns", body)["dag_run_id"])

    def dag_run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.request("GET", f"/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id)}")["state"])

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        path = f"/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id)}/taskInstances"
        return {ti["task_id"]: ti for ti in self.request("GET", path)["task_instances"]}

    def wait_for_dag_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        def finished() -> str | None:
            state = self.dag_run_state(dag_id, run_id)
            return state if state in ("success", "failed") else None

        return str(wait_until(finished, timeout, f"DAG run {dag_id}/{run_id} to finish", interval=1))
