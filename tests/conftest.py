"""Shared pytest fixtures.

Hub fixtures (see tests/fixtures/hub_server.py for how the loopback Hub works and its limits):

* ``hf_home`` (session, autouse): every test runs with ``HF_HOME`` in a session temp dir, HF cache/token overrides
  unset and ``HF_HUB_DISABLE_TELEMETRY=1``; already imported huggingface_hub/datasets constants are re-derived.
* ``loopback_hub`` (session): a started :class:`hub_server.LoopbackHub` with ``HF_ENDPOINT`` pointing at it for the
  rest of the session. Add repos with ``loopback_hub.add_repo("org/name", folder, repo_type=...)``; use unique repo
  ids per test. Skips the test if olah cannot be started.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .fixtures.hub_server import HubServerError, LoopbackHub, hub_env, isolated_hf_home_env, patched_hf_env


def pytest_configure(config: pytest.Config) -> None:
    # Checks of the test fixtures themselves (tests/fixtures/): they exercise olah, timm and datasets, not pdiff_hub.
    config.addinivalue_line("markers", "fixture: checks of the test fixtures, not of pdiff_hub (tests/fixtures/)")


@pytest.fixture(scope="session", autouse=True)
def hf_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("hf_home")
    with patched_hf_env(isolated_hf_home_env(home)):
        yield home


@pytest.fixture(scope="session")
def loopback_hub(hf_home: Path) -> Iterator[LoopbackHub]:
    pytest.importorskip("olah", reason="the loopback Hub needs `pip install olah`")
    hub = LoopbackHub()
    try:
        hub.start()
    except HubServerError as err:
        pytest.skip(f"loopback Hub (olah) could not be started: {err}")
    try:
        with hub_env(hub.endpoint, hf_home):
            yield hub
    finally:
        hub.stop()
