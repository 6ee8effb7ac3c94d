"""The browser tests share one Chromium (tests/browser_util.py); it is closed when the session ends."""

import pytest

from tests.browser_util import close_shared_chromium


@pytest.fixture(scope="session", autouse=True)
def _one_chromium_per_session():
    yield
    close_shared_chromium()
