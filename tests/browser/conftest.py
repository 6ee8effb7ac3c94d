"""The browser tests share one Chromium (tests/browser_util.py: `browser()`, `plugin_page()`), closed when the last
test of this folder is done: Playwright's sync API allows one instance per thread, so tests elsewhere (the notebook
tests) start their own afterwards. A test here uses `browser()` rather than a `sync_playwright()` of its own."""

import pytest

from tests.browser_util import close_shared_chromium


@pytest.fixture(scope="package", autouse=True)
def _one_chromium_for_the_browser_tests():
    yield
    close_shared_chromium()
