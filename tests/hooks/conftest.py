from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_clarifai.hooks._transport import close_async_endpoints
from airflow_provider_clarifai.ids import PipelineVersionIds
from airflow_provider_clarifai.retry import RetryPolicy

# Retries fast enough for tests, with the default attempt count.
FAST_RETRIES = RetryPolicy(initial_backoff=0.01, max_backoff=0.05, throttle_backoff=0.05, max_elapsed=20)

IDS = PipelineVersionIds("demo-user", "pipelines-app", "nightly-training", "v1")


def run_async(factory: Callable[[], Any]) -> Any:
    """Run a coroutine in a fresh loop and close that loop's shared channels afterwards."""

    async def main() -> Any:
        try:
            return await factory()
        finally:
            await close_async_endpoints()

    return asyncio.run(main())


@pytest.fixture(params=["sync", "asyncio"])
def call(request) -> Callable[..., Any]:
    """Call a hook method by its sync name, through the sync method or its asyncio twin."""
    mode = request.param

    def invoke(hook: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        if mode == "sync":
            return getattr(hook, name)(*args, **kwargs)
        return run_async(lambda: getattr(hook, "a" + name)(*args, **kwargs))

    invoke.mode = mode  # type: ignore[attr-defined]
    return invoke
