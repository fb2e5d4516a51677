"""The connection "Test" button on a Clarifai connection, as Airflow's own UI presses it.

Airflow 3.3: a real API server (its own process, on the session's metadata DB) and the emulator (in this
process). The API tests send what the UI's JavaScript sends: the add form's body to create the
connection, then the connection list's Test body, built from the listed row the way the UI builds it
(``port: Number(row.port)``, which is 0 for an empty port; see :func:`list_test_body`). The browser test
drives the real UI in headless Chromium (Debian's ``chromium``, driven by Playwright through
``executable_path``; no browser download): it fills the add form, saves, presses Test and reads the
message. On failure a screenshot and the API server's log tail are kept under ``$CLARIFAI_TEST_ARTIFACTS``
(default: pytest's temporary directory), and the failure message names the files.

Airflow 2.11: the webserver's ``/api/v1/connections/test`` with the body its connection form's
JavaScript sends (non-empty fields only, extras under both spellings), through Flask's test client.

The browser test is skipped when Chromium or Playwright is missing, unless ``CLARIFAI_REQUIRE_BROWSER=1``
(``scripts/test.sh`` sets it on the newest environment), which turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_clarifai.emulator.clock import ManualClock
from airflow_provider_clarifai.emulator.server import ClarifaiEmulator
from airflow_provider_clarifai.get_provider_info import CONN_FIELDS
from tests.airflow_dags import AIRFLOW_3

sys.path.insert(0, str(Path(__file__).parents[2]))
from demo.local_airflow import LocalAirflow, free_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TOKEN = "ui-test-pat-0001"
SCENARIO = {
    "rate_limit_per_second": 0,
    "tokens": [{"token": TOKEN, "user_id": "ui-user"}],
    "users": [{"id": "ui-user", "apps": []}],
}
CHROMIUM = "/usr/bin/chromium"
# The flags this closed network needs: no background traffic, no component updates, no sync.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def ui_emulator() -> Iterator[ClarifaiEmulator]:
    with ClarifaiEmulator(SCENARIO, clock=ManualClock()) as emulator:
        yield emulator


def cases(emulator: ClarifaiEmulator) -> dict[str, dict[str, Any]]:
    """Three connections: what each is saved with, and what its test must answer."""
    dead_port = free_port()  # bound and released: nothing listens there
    return {
        "good": {
            "host": "http://127.0.0.1",
            "port": emulator.port,
            "password": TOKEN,
            "status": True,
            "says": [f"Connected to the Clarifai API at 127.0.0.1:{emulator.port} as user 'ui-user'"],
        },
        "wrong_token": {
            "host": "http://127.0.0.1",
            "port": emulator.port,
            "password": "not-the-token",
            "status": False,
            "says": ["Personal Access Token"],
        },
        "unreachable": {
            "host": "http://127.0.0.1",
            "port": dead_port,
            "password": TOKEN,
            "status": False,
            "says": [f"127.0.0.1:{dead_port}"],
        },
    }


# Airflow 3.3 ------------------------------------------------------------------------------------------


class Api:
    """Plain HTTP to the API server, keeping status codes (LocalAirflow.request raises on them)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 (our own http://127.0.0.1 server)
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")


@pytest.fixture(scope="module")
def airflow3(airflow_db, tmp_path_factory) -> Iterator[LocalAirflow]:
    """A real Airflow 3 API server with connection tests enabled, on the session's metadata DB."""
    if not AIRFLOW_3:
        pytest.skip("the Airflow 3 UI and API server")
    airflow = LocalAirflow(
        Path(os.environ["AIRFLOW_HOME"]),
        tmp_path_factory.mktemp("ui-dags"),
        {"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"},
    )
    airflow.start("api-server")
    try:
        try:
            wait_until(airflow._api_up, 120, "the Airflow API server")
        except TimeoutError:
            pytest.fail("the API server did not start:\n" + airflow.log_of("api-server")[-3000:])
        yield airflow
    finally:
        airflow.stop_all()


@pytest.fixture
def api(airflow3) -> Api:
    return Api(f"http://127.0.0.1:{airflow3.port}")


def add_form_body(connection_id: str, host: str, port: int | str, password: str) -> dict[str, Any]:
    """What the add form posts (Airflow 3.3's UI: empty fields are left out, the port is a number,
    the extra holds every extra field, empty ones as null and the declared defaults filled in)."""
    extra = {name: field["schema"].get("default") for name, field in CONN_FIELDS.items()}
    body: dict[str, Any] = {
        "conn_type": "clarifai",
        "connection_id": connection_id,
        "extra": json.dumps(extra, indent=2),
        "host": host,
        "password": password,
    }
    if port != "":
        body["port"] = int(port)
    return body


def list_test_body(row: dict[str, Any]) -> dict[str, Any]:
    """What the connection list's Test button posts for a listed row (Airflow 3.3.2's UI bundle,
    ``airflow/ui/dist/assets/index-*.js``: ``port: Number(n.port)``, the other fields ``?? ""``)."""

    def number(value: Any) -> int:  # JavaScript's Number(): null -> 0
        return 0 if value is None else int(value)

    return {
        "conn_type": row["conn_type"],
        "connection_id": row["connection_id"],
        "description": row.get("description") or "",
        "extra": row.get("extra") or "{}",
        "host": row.get("host") or "",
        "login": row.get("login") or "",
        "password": row.get("password") or "",
        "port": number(row.get("port")),
        "schema": row.get("schema") or "",
    }


def listed_row(api: Api, connection_id: str) -> dict[str, Any]:
    status, listing = api.call("GET", f"/api/v2/connections?connection_id_pattern={connection_id}")
    assert status == 200, listing
    (row,) = [row for row in listing["connections"] if row["connection_id"] == connection_id]
    return row


def test_the_airflow3_form_shows_the_port_field(api):
    status, hooks = api.call("GET", "/ui/connections/hook_meta")
    assert status == 200, hooks
    (clarifai,) = [hook for hook in hooks if hook["connection_type"] == "clarifai"]
    fields = clarifai["standard_fields"]
    # Hidden, the port would be saved empty and come back from the list as 0 (see the module docstring).
    assert fields["port"]["hidden"] is False
    assert "443" in fields["port"]["placeholder"]
    assert fields["host"]["hidden"] is False and fields["password"]["hidden"] is False
    assert fields["login"]["hidden"] is True and fields["url_schema"]["hidden"] is True
    assert set(clarifai["extra_fields"]) == set(CONN_FIELDS)


@pytest.mark.parametrize("case", ["good", "wrong_token", "unreachable"])
def test_the_airflow3_list_test_button_gives_the_providers_message(case, api, ui_emulator):
    spec = cases(ui_emulator)[case]
    connection_id = f"clarifai_api_{case}"
    body = add_form_body(connection_id, spec["host"], spec["port"], spec["password"])
    status, created = api.call("POST", "/api/v2/connections", body)
    assert status == 201, created
    try:
        row = listed_row(api, connection_id)
        assert row["port"] == spec["port"] and row["password"] == "***"
        status, answer = api.call("POST", "/api/v2/connections/test", list_test_body(row))
        assert status == 200, answer
        print(f"{case}: {answer}")
        assert answer["status"] is spec["status"], answer
        for words in spec["says"]:
            assert words in answer["message"], answer
        assert TOKEN not in answer["message"]
    finally:
        api.call("DELETE", f"/api/v2/connections/{connection_id}")


def browser_or_skip() -> Any:
    """Playwright's sync API, or a skip (a failure under CLARIFAI_REQUIRE_BROWSER=1)."""
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"{CHROMIUM} (Debian's chromium package)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
        missing.append("the playwright Python package")
    if missing:
        message = "the browser test needs " + " and ".join(missing)
        if os.environ.get("CLARIFAI_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " (CLARIFAI_REQUIRE_BROWSER=1)")
        pytest.skip(message)
    return sync_playwright


@pytest.fixture
def artifacts(tmp_path_factory) -> Path:
    configured = os.environ.get("CLARIFAI_TEST_ARTIFACTS")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("artifacts", numbered=True)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_airflow3_ui_test_button_in_a_real_browser(airflow3, ui_emulator, artifacts):
    sync_playwright = browser_or_skip()
    base = f"http://127.0.0.1:{airflow3.port}"
    specs = cases(ui_emulator)
    seen: dict[str, str] = {}
    profile = tempfile.mkdtemp(prefix="clarifai-chromium-")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=CHROMIUM_FLAGS,
            headless=True,
            viewport={"width": 1280, "height": 1000},
        )
        page = browser.new_page()
        page.set_default_timeout(30_000)
        try:
            page.goto(base + "/connections")
            for case, spec in specs.items():
                add_through_the_form(page, f"clarifai_ui_{case}", spec)
            for case, spec in specs.items():
                seen[case] = press_test(page, f"clarifai_ui_{case}", spec)
        except Exception as err:
            shot = artifacts / "connection-test-button.png"
            log = artifacts / "api-server.log"
            page.screenshot(path=str(shot), full_page=True)
            log.write_text(airflow3.log_of("api-server")[-20000:])
            raise AssertionError(f"{err}\nScreenshot: {shot}\nAPI server log: {log}") from err
        finally:
            browser.close()
            shutil.rmtree(profile, ignore_errors=True)
            api = Api(base)
            for case in specs:
                api.call("DELETE", f"/api/v2/connections/clarifai_ui_{case}")
    for case, message in seen.items():
        print(f"{case}: {message}")


def add_through_the_form(page: Any, connection_id: str, spec: dict[str, Any]) -> None:
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Connection ID").fill(connection_id)
    dialog.get_by_role("combobox").fill("Clarifai")
    page.keyboard.press("Enter")
    dialog.get_by_label("API base URL").fill(spec["host"])
    dialog.get_by_label("API port").fill(str(spec["port"]))
    dialog.get_by_label("Personal Access Token (PAT)").fill(spec["password"])
    dialog.get_by_role("button", name="Save").click()
    dialog.wait_for(state="hidden")


def press_test(page: Any, connection_id: str, spec: dict[str, Any]) -> str:
    """Press the row's Test button; return the message the UI shows, checked against ``spec``."""
    row = page.get_by_role("row").filter(has_text=connection_id)
    with page.expect_response(lambda response: response.url.endswith("/api/v2/connections/test")) as sent:
        row.get_by_role("button", name="Test Connection").click()
    assert sent.value.status == 200, f"{connection_id}: HTTP {sent.value.status} {sent.value.text()}"
    answer = sent.value.json()
    assert answer["status"] is spec["status"], answer
    title = "Test Connection Successful" if spec["status"] else "Test Connection Failed"
    # The toast shows the title and the provider's message, as the API answered it.
    toast = page.get_by_role("status").filter(has_text=title).filter(has_text=answer["message"][:60])
    toast.first.wait_for(state="visible")
    shown = toast.first.inner_text()
    for words in spec["says"]:
        assert words in shown, shown
    page.mouse.move(0, 0)  # the button's tooltip would cover the next row's button
    return shown.replace("\n", " | ")


# Airflow 2.11 -----------------------------------------------------------------------------------------


@pytest.fixture
def airflow2_client(airflow_db, monkeypatch) -> Any:
    if AIRFLOW_3:
        pytest.skip("the Airflow 2 webserver")
    monkeypatch.setenv("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")
    monkeypatch.setenv("AIRFLOW__API__AUTH_BACKENDS", "airflow.api.auth.backend.default")
    from airflow.www.app import create_app

    app = create_app(testing=True)
    # Anonymous requests act as Admin: this throw-away webserver has no users.
    app.config["AUTH_ROLE_PUBLIC"] = "Admin"
    return app.test_client()


def airflow2_form_body(connection_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    """What Airflow 2.11's connection form posts for Test (``www/static/js/connection_form.js``):
    non-empty fields only, the port as a number, extras under both spellings, JSON-encoded."""
    return {
        "connection_id": connection_id,
        "conn_type": "clarifai",
        "host": spec["host"],
        "password": spec["password"],
        "port": spec["port"],
        "extra": json.dumps({"extra__clarifai__timeout": "30", "timeout": "30"}),
    }


def test_the_airflow2_form_shows_the_port_field():
    if AIRFLOW_3:
        pytest.skip("the Airflow 2 form")
    from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook

    behaviour = ClarifaiHook.get_ui_field_behaviour()
    assert "port" not in behaviour["hidden_fields"]
    assert behaviour["relabeling"]["port"] == "API port"
    assert set(ClarifaiHook.get_connection_form_widgets()) == set(CONN_FIELDS)


@pytest.mark.parametrize("case", ["good", "wrong_token", "unreachable"])
def test_the_airflow2_form_test_button_gives_the_providers_message(case, airflow2_client, ui_emulator):
    spec = cases(ui_emulator)[case]
    response = airflow2_client.post(
        "/api/v1/connections/test", json=airflow2_form_body(f"clarifai_form_{case}", spec)
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    print(f"{case}: {answer}")
    assert answer["status"] is spec["status"], answer
    for words in spec["says"]:
        assert words in answer["message"], answer
