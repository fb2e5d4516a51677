"""What the hook's layers cost per call, next to a bare gRPC call.

Starts the emulator in its own process (rate limit off), then times N sequential GetPipelineVersionRun
calls four ways: a bare clarifai-grpc ``V2Stub`` call (blocking and asyncio) and ``ClarifaiHook.get_run``
/ ``aget_run`` (argument checks, retry policy, error mapping, conversion to ``PipelineRun``). Prints
medians, 95th percentiles and the hook/bare ratios.

Usage: python benchmarks/call_overhead.py [--calls 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

TOKEN = "emulator-pat-0123456789"
IDS = ("demo-user", "pipelines-app", "nightly-training", "v1")
RUN_ID = "run-running"


def summarize(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e6, ordered[int(len(ordered) * 0.95) - 1] * 1e6


def time_sync(call: Callable[[], object], calls: int) -> list[float]:
    for _ in range(20):
        call()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


async def time_async(call: Callable[[], Awaitable[object]], calls: int) -> list[float]:
    for _ in range(20):
        await call()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return samples


def bare_request():  # type: ignore[no-untyped-def]
    from clarifai_grpc.grpc.api import resources_pb2, service_pb2

    return service_pb2.GetPipelineVersionRunRequest(
        user_app_id=resources_pb2.UserAppIDSet(user_id=IDS[0], app_id=IDS[1]),
        pipeline_id=IDS[2],
        pipeline_version_id=IDS[3],
        pipeline_version_run_id=RUN_ID,
    )


def measure(host: str, port: int, calls: int) -> dict[str, list[float]]:
    from clarifai_grpc.channel.clarifai_channel import ClarifaiChannel
    from clarifai_grpc.grpc.api import service_pb2_grpc

    from airflow_provider_clarifai.hooks._transport import close_async_endpoints
    from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
    from airflow_provider_clarifai.ids import PipelineVersionIds

    metadata = (("authorization", "Key " + TOKEN),)
    request = bare_request()
    ids = PipelineVersionIds(*IDS)
    results: dict[str, list[float]] = {}

    channel = ClarifaiChannel.get_insecure_grpc_channel(base=host, port=port)
    stub = service_pb2_grpc.V2Stub(channel)
    results["bare grpc (blocking)"] = time_sync(
        lambda: stub.GetPipelineVersionRun(request, metadata=metadata, timeout=30), calls
    )
    channel.close()
    with ClarifaiHook() as hook:
        results["ClarifaiHook.get_run"] = time_sync(lambda: hook.get_run(ids, RUN_ID), calls)

    async def run_async() -> None:
        aio_channel = ClarifaiChannel.get_aio_insecure_grpc_channel(base=host, port=port)
        aio_stub = service_pb2_grpc.V2Stub(aio_channel)
        results["bare grpc.aio"] = await time_async(
            lambda: aio_stub.GetPipelineVersionRun(request, metadata=metadata, timeout=30), calls
        )
        await aio_channel.close()
        hook = ClarifaiHook()
        results["ClarifaiHook.aget_run"] = await time_async(lambda: hook.aget_run(ids, RUN_ID), calls)
        await close_async_endpoints()

    asyncio.run(run_async())
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        ready = Path(workdir) / "address"
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "airflow_provider_clarifai.emulator"),
                *("--port", "0", "--rate-limit", "0", "--ready-file", str(ready)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while not ready.exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("emulator did not start")
                time.sleep(0.05)
            host, port = ready.read_text().strip().rsplit(":", 1)
            conn = {"conn_type": "clarifai", "host": f"http://{host}:{port}", "password": TOKEN}
            os.environ["AIRFLOW_CONN_CLARIFAI_DEFAULT"] = json.dumps(conn)
            os.environ.setdefault("AIRFLOW_HOME", workdir)
            results = measure(host, int(port), args.calls)
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(f"{args.calls} sequential GetPipelineVersionRun calls against the emulator on loopback")
    print(f"{'':24} {'median µs':>10} {'p95 µs':>10}")
    medians = {}
    for name, samples in results.items():
        median, p95 = summarize(samples)
        medians[name] = median
        print(f"{name:24} {median:10.0f} {p95:10.0f}")
    blocking = medians["ClarifaiHook.get_run"] / medians["bare grpc (blocking)"]
    aio = medians["ClarifaiHook.aget_run"] / medians["bare grpc.aio"]
    print(f"hook / bare (blocking): {blocking:.2f}x   hook / bare (asyncio): {aio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
