"""Command line: serve the Clarifai emulator until SIGINT or SIGTERM.

``python -m airflow_provider_clarifai.emulator --port 50051 --scenario FILE.yaml`` (also installed as
``clarifai-emulator``); ``--tls-cert`` and ``--tls-key`` serve TLS instead of plain text. Once it accepts
requests it prints a line with the bound address, then a short banner: TLS or not, the tokens it accepts,
the pipeline versions and runs it loaded, and the Airflow connection to use. With ``--ready-file`` it also
writes the address to a file, so scripts can wait for the file instead of parsing output. With
``--stats-file`` it writes what it served (request counts, the most requests handled at once) as JSON
when it stops, for benchmarks that measure a client from the service's side.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import signal
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_clarifai.emulator.domain import RunScript
    from airflow_provider_clarifai.emulator.server import ClarifaiEmulator

__all__ = ["banner", "main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_clarifai.emulator",
        description="Serve a local emulator of the Clarifai pipeline-run gRPC API (plain text, or TLS with "
        "--tls-cert and --tls-key).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=50051, help="port to bind; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument("--scenario", help="scenario YAML file (default: the bundled default scenario)")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="emulated seconds per real second; 60 makes a 30-minute run take 30 s (default: %(default)s)",
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=None,
        help=(
            "requests per second per token, 0 for no limit (default: the scenario's, else 15); with "
            "--time-scale, per emulated second"
        ),
    )
    parser.add_argument(
        "--max-workers",
        type=int,
        default=32,
        help="threads serving requests, the most requests handled at once (default: %(default)s)",
    )
    parser.add_argument(
        "--tls-cert", type=Path, help="serve TLS with this PEM certificate (chain); needs --tls-key"
    )
    parser.add_argument("--tls-key", type=Path, help="the PEM private key of --tls-cert")
    parser.add_argument("--ready-file", type=Path, help="write the bound host:port here once serving")
    parser.add_argument(
        "--stats-file",
        type=Path,
        help="on stopping, write JSON counts of the requests served and the peak of requests in flight here",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request to stderr")
    return parser


def _write_atomically(path: Path, text: str) -> None:
    # A watcher polling for the file must never read it half-written.
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def _stats(emulator: ClarifaiEmulator) -> dict[str, Any]:
    """What the emulator has served, as written by ``--stats-file``.

    :param emulator: the emulator.
    :return: ``requests`` (the total), ``peak_in_flight`` (the most requests handled at once),
        ``by_method``, ``by_grpc_code`` (the gRPC status each client got) and ``by_code`` (the
        application status code of each answer; ``"none"`` when no answer was produced).
    """
    records = emulator.requests.snapshot()
    return {
        "requests": len(records),
        "peak_in_flight": emulator.in_flight.peak,
        "by_method": dict(Counter(record.method for record in records)),
        "by_grpc_code": dict(Counter(record.grpc_code for record in records)),
        "by_code": dict(Counter(record.code or "none" for record in records)),
    }


def _seconds(value: float | None) -> str:
    return "until changed" if value is None else f"{value:g} s"


def _script(script: RunScript) -> str:
    if script.queued_seconds is None:
        return "queued until changed"
    if script.running_seconds is None:
        return f"queued {_seconds(script.queued_seconds)}, then running until changed"
    return (
        f"queued {_seconds(script.queued_seconds)}, running {_seconds(script.running_seconds)}, "
        f"then {script.outcome}"
    )


def banner(emulator: ClarifaiEmulator, time_scale: float = 1.0, conn_id: str = "clarifai_default") -> str:
    """What the command line prints under its "listening" line: how to reach and use the emulator.

    The tokens are the scenario's own fake ones, which open nothing but this emulator.

    :param emulator: a started emulator.
    :param time_scale: emulated seconds per real second.
    :param conn_id: the Airflow connection id to show.
    :return: the banner's lines, each indented by two spaces.
    """
    from airflow_provider_clarifai.emulator.domain import DEFAULT_SCRIPT

    scenario = emulator.scenario
    if emulator.tls:
        trust = emulator.tls_root_certificates_path or "the CA that signed --tls-cert"
        transport = f"TLS (clients trust {trust})"
    else:
        transport = "plain text, no TLS"
    limit = emulator.rate_limit_per_second
    lines = [
        f"URL:        {emulator.base_url}  ({transport})",
        f"scenario:   {scenario.source}; emulated time runs {time_scale:g}x real time; "
        + ("no rate limit" if limit is None else f"rate limit {limit} requests per second per token"),
        "tokens (fake, for this emulator only; the first is the connection's):",
    ]
    width = max(len(token.token) for token in scenario.tokens)
    for token in scenario.tokens:
        scopes = ", ".join(sorted(token.scopes))
        lines.append(f"  {token.token:<{width}}  user {token.user_id}, scopes {scopes}")
    nodepools = [
        f"{user.id}: " + ", ".join(f"{cluster.id}/{nodepool.id}" for nodepool in cluster.nodepools)
        for user in scenario.users
        for cluster in user.compute_clusters
    ]
    if nodepools:
        lines.append("nodepools (user: compute_cluster/nodepool):")
        lines += [f"  {line}" for line in nodepools]
    lines.append("pipeline versions (user/app/pipeline/version) and their runs:")
    for user in scenario.users:
        for app in user.apps:
            for pipeline in app.pipelines:
                for version in pipeline.versions:
                    ids = (user.id, app.id, pipeline.id, version.id)
                    posted = _script(version.post_script or DEFAULT_SCRIPT)
                    lines.append(f"  {'/'.join(ids)}  (a posted run is {posted})")
                    states = {run.id: run.state for run in emulator.backend.runs(*ids)}
                    width = max((len(run_id) for run_id in states), default=0)
                    state_width = max((len(state) for state in states.values()), default=0)
                    for run in version.runs:
                        line = f"    {run.id:<{width}}  {states[run.id]:<{state_width}}"
                        if run.nodepool_id:
                            line += f"  on {run.compute_cluster_id}/{run.nodepool_id}"
                        lines.append(line.rstrip())
    name, value = emulator.airflow_connection_env(conn_id)
    lines += [
        f"Airflow connection {conn_id!r}:",
        f"  export {name}={shlex.quote(value)}",
        f"  or: airflow connections add {conn_id} --conn-json {shlex.quote(value)}",
    ]
    return "\n".join(f"  {line}" for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until interrupted.

    :param argv: the arguments (default: ``sys.argv[1:]``).
    :return: the exit code: 0 after a clean stop, 1 if the address cannot be bound (or the TLS certificate
        and key are not a valid pair), 2 for bad arguments, an invalid scenario or unreadable TLS files.
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if args.verbose:
        # Only the emulator's own logger: gRPC's debug output would drown the request lines.
        logging.getLogger("airflow_provider_clarifai.emulator").setLevel(logging.DEBUG)
    # Imported here so that --help and argument errors stay fast.
    from airflow_provider_clarifai.emulator.clock import WallClock
    from airflow_provider_clarifai.emulator.scenario import ScenarioError, load_scenario
    from airflow_provider_clarifai.emulator.server import ClarifaiEmulator

    if args.time_scale <= 0:
        print("error: --time-scale must be positive", file=sys.stderr)
        return 2
    if args.rate_limit is not None and args.rate_limit < 0:
        print("error: --rate-limit must be 0 or more", file=sys.stderr)
        return 2
    if args.max_workers < 1:
        print("error: --max-workers must be 1 or more", file=sys.stderr)
        return 2
    if (args.tls_cert is None) != (args.tls_key is None):
        print("error: --tls-cert and --tls-key go together: give both for TLS, or neither", file=sys.stderr)
        return 2
    try:
        # Always a path here: a mistyped file name must not be parsed as YAML text.
        scenario = load_scenario(None if args.scenario is None else Path(args.scenario))
    except ScenarioError as error:
        print(f"error: invalid scenario: {error}", file=sys.stderr)
        return 2
    if args.rate_limit is not None:
        scenario = dataclasses.replace(scenario, rate_limit_per_second=args.rate_limit or None)

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    try:
        clock = WallClock(scale=args.time_scale)
        emulator = ClarifaiEmulator(
            scenario,
            clock=clock,
            # With time scaled, the limit counts per emulated second, as the service's does per real one:
            # a scaled benchmark then meets the same limit per emulated second as production.
            rate_limit_clock=clock if args.time_scale != 1.0 else None,
            host=args.host,
            port=args.port,
            max_workers=args.max_workers,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
        )
    except ValueError as error:  # an unreadable --tls-cert or --tls-key
        print(f"error: {error}", file=sys.stderr)
        return 2
    # Installed before the server starts, so a signal arriving at any point still stops it cleanly.
    previous_handlers = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous_handlers[signum] = signal.signal(signum, request_stop)
    serving = False
    try:
        try:
            emulator.start()
        except OSError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        serving = True
        print(f"Clarifai emulator listening on {emulator.address}{' (TLS)' if emulator.tls else ''}")
        print(banner(emulator, args.time_scale), flush=True)
        if args.ready_file is not None:
            _write_atomically(args.ready_file, emulator.address + "\n")
        # A timed wait keeps the main thread returning to the interpreter, where signal handlers run.
        while not stop_requested.wait(0.2):
            pass
    finally:
        emulator.stop()
        if args.ready_file is not None:
            # A stale address left behind would send the next script to a dead port.
            args.ready_file.unlink(missing_ok=True)
        if args.stats_file is not None and serving:
            _write_atomically(args.stats_file, json.dumps(_stats(emulator), indent=2) + "\n")
        # Restored so that main() called from Python (or a test) leaves the process as it found it.
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
    print("Clarifai emulator stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
