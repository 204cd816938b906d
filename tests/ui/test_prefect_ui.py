"""What a Prefect user sees: the smoke run's report artifact in the stock Prefect UI, in a real browser.

Debian's Chromium (``/usr/bin/chromium``, ``apt-get install chromium``), driven by Playwright
for Python (nothing downloaded: no ``playwright install``), opens the ``alphacode-report``
artifact of the session's smoke run (``smoke_pipeline`` in ``tests/conftest.py``) and one
evaluate stage's markdown artifact, in both Prefect UIs (v2, where a browser opening the
server's root is sent, and v1), served by ``prefect server start --ui`` over the test harness's
database (the harness's own temporary server runs with the UI off). It asserts that the
rendered markdown holds the report's plots (pass@k and n@k of every split and of all), that
every one of its images has loaded (``naturalWidth > 0``: a ``file://`` or relative image
never does in an ``http://`` page) and that the comparison table is there. Full-page
screenshots go to the test's tmp dir. Skipped only when ``/usr/bin/chromium`` is absent.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# the rendered markdown's images: v2 renders markdown inside `.prose`, v1 gives each its class
MARKDOWN_IMAGES = ".prose img, img.markdown-renderer__image"
UIS = {"v2": "/v2", "v1": ""}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no {CHROMIUM}: apt-get install chromium"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    """The project's own readiness check (``flows.serve``), with the server's log on failure."""
    from flows.serve import wait_healthy as api_healthy

    try:
        api_healthy(f"{url}/api", timeout_s=timeout)
    except TimeoutError:
        state = f"exited {server.returncode}" if server.poll() is not None else "still running"
        raise RuntimeError(f"prefect server start {state}:\n{log.read_text()[-3000:]}") from None


@pytest.fixture(scope="module")
def ui_url(prefect_harness, tmp_path_factory):
    """``prefect server start`` with the UI, no services, over the harness's database."""
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    from flows.serve import prefect_bin

    home = tmp_path_factory.mktemp("ui-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": PREFECT_SERVER_DATABASE_CONNECTION_URL.value(),
        "PREFECT_UI_API_URL": f"{url}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    log = home / "server.log"
    command = [prefect_bin(), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("w") as out:
        server = subprocess.Popen(
            [*command, "--ui", "--no-services", "--analytics-off"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_healthy(url, server, log)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def latest_artifact_id(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert found, f"no artifact {key!r} in the harness's database"
    return str(found[0].id)


def rendered(page, url: str, screenshot: Path) -> tuple[list[dict], list[str]]:
    """The rendered markdown's images (alt, src scheme, naturalWidth) and table headers at ``url``."""
    page.goto(url)
    page.wait_for_selector("table th", timeout=90_000)
    page.wait_for_function(
        "sel => [...document.querySelectorAll(sel)].every(i => i.complete)",
        arg=MARKDOWN_IMAGES,
        timeout=60_000,
    )
    images = page.eval_on_selector_all(
        MARKDOWN_IMAGES,
        "els => els.map(i => ({alt: i.alt, src: (i.getAttribute('src') || '').slice(0, 30), width: i.naturalWidth}))",
    )
    headers = page.eval_on_selector_all("table th", "els => els.map(e => e.textContent.trim())")
    page.screenshot(path=str(screenshot), full_page=True)  # v1 scrolls inside: its first screen only
    if images and images[0]["width"] > 0:
        plot = screenshot.with_name(f"{screenshot.stem}-first-plot.png")
        page.locator(MARKDOWN_IMAGES).first.screenshot(path=str(plot))
    return images, headers


@pytest.mark.parametrize("ui", sorted(UIS))
def test_report_artifact_shows_its_plots_and_comparison(smoke_pipeline, ui_url, browser_page, ui, tmp_path):
    report = smoke_pipeline.report
    splits = sorted({row["split"] for row in report.metrics["comparison"]})
    expected = {f"{plot} {split}" for split in splits for plot in ("pass@k", "n@k")}
    url = f"{ui_url}{UIS[ui]}/artifacts/artifact/{latest_artifact_id('alphacode-report')}"
    images, headers = rendered(browser_page, url, tmp_path / f"report-{ui}.png")
    not_loaded = [i for i in images if i["width"] <= 0]
    assert not not_loaded, f"images that did not load in the {ui} UI: {not_loaded} (screenshot {tmp_path})"
    assert expected <= {i["alt"] for i in images}, images
    assert {"split", "metric", "best baseline", "difference", "families"} <= set(headers), headers


@pytest.mark.parametrize("ui", sorted(UIS))
def test_stage_artifact_shows_every_png_of_its_stage(smoke_pipeline, ui_url, browser_page, ui, tmp_path):
    from tasks.artifacts import artifact_key

    evaluation = smoke_pipeline.sft.evaluation
    pngs = [name for name in evaluation.files if name.endswith(".png")]
    url = f"{ui_url}{UIS[ui]}/artifacts/artifact/{latest_artifact_id(artifact_key(evaluation, '-report'))}"
    images, _ = rendered(browser_page, url, tmp_path / f"evaluate-{ui}.png")
    assert len(pngs) >= 3 and len(images) >= len(pngs), (pngs, images)
    not_loaded = [i for i in images if i["width"] <= 0]
    assert not not_loaded, f"images that did not load in the {ui} UI: {not_loaded} (screenshot {tmp_path})"


def test_no_artifact_links_a_file_url(smoke_pipeline):
    """A ``file://`` image never loads in the UI's ``http://`` page: no artifact may promise one."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifacts = []
        while page := client.read_artifacts(limit=200, offset=len(artifacts)):
            artifacts += page
    assert any(a.key == "alphacode-report" for a in artifacts)
    assert not [a.key for a in artifacts if a.type == "image" and str(a.data).startswith("file:")]
    assert not [a.key for a in artifacts if "](file://" in str(a.data)]
