"""Session-wide test settings: offline hub, quiet telemetry, a throwaway PREFECT_HOME."""

import os
import tempfile

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="alphacode-prefect-home-"))
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API for the whole session (a second harness in the same session
    would leave clients and flows talking to different APIs); no heartbeats, so a trivial flow
    takes ~0.15 s instead of ~1.1 s."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        with prefect_test_harness(server_startup_timeout=120):
            yield


@pytest.fixture(scope="session")
def smoke_pipeline(prefect_harness, tmp_path_factory):
    """The smoke profile's pipeline, run once per session under :func:`prefect_harness` (a few
    minutes on 2 cores): shared by the slow pipeline tests and the browser test of the UI, which
    reads the artifacts this run left in the harness's database."""
    from flows.pipeline import alphacode_pipeline

    return alphacode_pipeline(profile="smoke", out_dir=str(tmp_path_factory.mktemp("smoke")))
