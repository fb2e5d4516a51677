"""The pytest plugin, exercised in inner pytest sessions (pytester).

Each inner session declares the plugin the way the docs tell users to, in its ``conftest.py``; nothing
loads it otherwise.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest

pytest_plugins = ["pytester"]

PLUGIN = "airflow_provider_clarifai.emulator.pytest_plugin"


@pytest.fixture
def plugin_args(pytester: pytest.Pytester) -> list[str]:
    """Arguments for the inner sessions, whose ``conftest.py`` declares the plugin.

    pytest-asyncio is left out because the inner tests need no event loop and it would warn about its
    unset configuration.
    """
    pytester.makeconftest(f"pytest_plugins = [{PLUGIN!r}]\n")
    return ["-p", "no:asyncio", "-p", "no:randomly"]


def test_plugin_import_is_light() -> None:
    code = (
        "import sys; import airflow_provider_clarifai.emulator.pytest_plugin; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'clarifai_grpc', 'yaml')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_package_import_is_lazy_and_every_export_resolves() -> None:
    code = (
        "import sys; import airflow_provider_clarifai.emulator as emulator; "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'clarifai_grpc', 'yaml')); "
        "missing = [name for name in emulator.__all__ if getattr(emulator, name, None) is None]; "
        "print(heavy, missing)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[] []"


def test_installing_the_provider_registers_no_pytest_plugin() -> None:
    groups = {entry.group for entry in metadata.distribution("airflow-provider-clarifai").entry_points}
    assert "pytest11" not in groups
    assert not [entry for entry in metadata.entry_points(group="pytest11") if PLUGIN in entry.value]


def test_without_the_declaration_the_fixtures_are_not_there(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_wants_the_emulator(clarifai_emulator):
            pass
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:asyncio", "-p", "no:randomly")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'clarifai_emulator' not found*"])


def test_marker_is_registered(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    result = pytester.runpytest_inprocess("--markers", *plugin_args)
    result.stdout.fnmatch_lines(["@pytest.mark.clarifai_scenario(*"])


@pytest.mark.integration
def test_default_fixture_and_cleanup(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    pytester.makepyfile(
        """
        import grpc
        import pytest
        from clarifai_grpc.channel.clarifai_channel import ClarifaiChannel
        from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc
        from airflow_provider_clarifai.emulator.clock import ManualClock

        SEEN = {}

        def get_user(port, timeout=60):
            channel = ClarifaiChannel.get_insecure_grpc_channel(base="127.0.0.1", port=port)
            with channel:
                return service_pb2_grpc.V2Stub(channel).GetUser(
                    service_pb2.GetUserRequest(user_app_id=resources_pb2.UserAppIDSet(user_id="me")),
                    metadata=(("authorization", "Key emulator-pat-0123456789"),),
                    timeout=timeout,
                )

        def test_uses_the_emulator(clarifai_emulator):
            assert isinstance(clarifai_emulator.clock, ManualClock)
            assert clarifai_emulator.token == "emulator-pat-0123456789"
            assert get_user(clarifai_emulator.port).user.id == "demo-user"
            SEEN["port"] = clarifai_emulator.port

        def test_emulator_was_stopped_after_the_test():
            channel = grpc.insecure_channel(f"127.0.0.1:{SEEN['port']}")
            with channel, pytest.raises(grpc.RpcError) as raised:
                service_pb2_grpc.V2Stub(channel).GetUser(service_pb2.GetUserRequest(), timeout=30)
            assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
        """
    )
    result = pytester.runpytest_inprocess(*plugin_args)
    result.assert_outcomes(passed=2)


@pytest.mark.integration
def test_scenario_marker_forms(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    pytester.makefile(
        ".yaml",
        beside_test="tokens: [{token: file-token, user_id: file-user}]\nusers: [{id: file-user}]\n",
    )
    pytester.makepyfile(
        """
        import pytest
        from airflow_provider_clarifai.emulator.clock import WallClock

        INLINE = '''
        tokens: [{token: inline-token, user_id: inline-user}]
        users: [{id: inline-user}]
        rate_limit_per_second: 0
        '''

        @pytest.mark.clarifai_scenario(INLINE)
        def test_inline_yaml(clarifai_emulator):
            assert clarifai_emulator.token == "inline-token"
            assert clarifai_emulator.rate_limit_per_second is None

        @pytest.mark.clarifai_scenario("beside_test.yaml")
        def test_file_beside_the_test(clarifai_emulator):
            assert clarifai_emulator.token == "file-token"

        DICT = {"tokens": [{"token": "dict-token", "user_id": "u"}], "users": [{"id": "u"}]}

        @pytest.mark.clarifai_scenario(DICT)
        def test_dict(clarifai_emulator):
            assert clarifai_emulator.token == "dict-token"

        @pytest.mark.clarifai_scenario(time_scale=50)
        def test_time_scale_uses_a_fast_wall_clock(clarifai_emulator):
            assert isinstance(clarifai_emulator.clock, WallClock)
            assert clarifai_emulator.clock.scale == 50
            assert clarifai_emulator.token == "emulator-pat-0123456789"

        @pytest.mark.clarifai_scenario("tokens: []")
        def test_invalid_scenario_errors(clarifai_emulator):
            pass
        """
    )
    result = pytester.runpytest_inprocess("--strict-markers", *plugin_args)
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(["*ScenarioError: tokens: at least one token is needed*"])


@pytest.mark.integration
def test_clarifai_connection_sets_the_airflow_variable(
    pytester: pytest.Pytester, plugin_args: list[str]
) -> None:
    pytester.makepyfile(
        """
        import json
        import os

        def test_connection(clarifai_connection, clarifai_emulator):
            assert clarifai_connection == "clarifai_default"
            value = json.loads(os.environ["AIRFLOW_CONN_CLARIFAI_DEFAULT"])
            assert value == {
                "conn_type": "clarifai",
                "host": clarifai_emulator.base_url,
                "password": clarifai_emulator.token,
                "extra": {},
            }

        def test_variable_is_removed_afterwards():
            assert "AIRFLOW_CONN_CLARIFAI_DEFAULT" not in os.environ
        """
    )
    result = pytester.runpytest_inprocess(*plugin_args)
    result.assert_outcomes(passed=2)


@pytest.mark.integration
def test_the_rate_limit_is_off_unless_a_test_asks_for_one(
    pytester: pytest.Pytester, plugin_args: list[str]
) -> None:
    pytester.makepyfile(
        """
        import pytest

        LIMITED = "tokens: [{token: t, user_id: u}]\\nusers: [{id: u}]\\nrate_limit_per_second: 3\\n"

        def test_the_default_scenario_says_15_but_the_fixture_has_no_limit(clarifai_emulator):
            assert clarifai_emulator.scenario.rate_limit_per_second == 15
            assert clarifai_emulator.rate_limit_per_second is None

        @pytest.mark.clarifai_scenario(LIMITED)
        def test_nor_with_a_scenario_that_sets_one(clarifai_emulator):
            assert clarifai_emulator.rate_limit_per_second is None

        @pytest.mark.clarifai_scenario(rate_limit_per_second=15)
        def test_the_marker_asks_for_one(clarifai_emulator):
            assert clarifai_emulator.rate_limit_per_second == 15

        class TestOptions:
            @pytest.fixture
            def clarifai_emulator_options(self):
                return {"rate_limit_per_second": 4}

            def test_the_options_ask_for_one(self, clarifai_emulator):
                assert clarifai_emulator.rate_limit_per_second == 4

            @pytest.mark.clarifai_scenario(rate_limit_per_second=0)
            def test_the_marker_wins_over_the_options(self, clarifai_emulator):
                assert clarifai_emulator.rate_limit_per_second is None
        """
    )
    result = pytester.runpytest_inprocess("--strict-markers", *plugin_args)
    result.assert_outcomes(passed=5)


@pytest.mark.integration
def test_the_connection_extra_is_a_fixture_too(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    pytester.makepyfile(
        """
        import json
        import os

        import pytest

        @pytest.fixture
        def clarifai_connection_extra():
            return {"timeout": 5}

        def test_connection(clarifai_connection):
            value = json.loads(os.environ["AIRFLOW_CONN_CLARIFAI_DEFAULT"])
            assert value["extra"] == {"timeout": 5}
        """
    )
    result = pytester.runpytest_inprocess(*plugin_args)
    result.assert_outcomes(passed=1)
