"""Helpers for the Chromium tests of the views: launch Debian's Chromium, open the plugin, read canvas pixels."""

import contextlib
import shutil

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Pixels painted (alpha > 0) and a hash of all pixels of every canvas matching `sel`, computed in the page.
CANVAS_SIGNATURE_JS = """(sel) => {
  let painted = 0, h = 2166136261, size = 0;
  for (const c of document.querySelectorAll(sel)) {
    if (!c.width || !c.height) continue;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    size += d.length / 4;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] !== 0) painted++;
      h = Math.imul(h ^ (d[i] | (d[i + 1] << 8) | (d[i + 2] << 16) | (d[i + 3] << 24)), 16777619) >>> 0;
    }
  }
  return {painted, hash: h, size};
}"""


def chromium_path():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium not found on PATH (expected /usr/bin/chromium); the browser test cannot run")
    return path


class _Session:
    playwright = None
    browser = None


def shared_chromium():
    """The test session's one Chromium, started on first use and closed by tests/browser/conftest.py: launching it
    takes seconds on a small machine, and every test gets fresh contexts (cookies, storage, downloads) anyway."""
    if _Session.browser is None or not _Session.browser.is_connected():  # (re)started if a test crashed it
        if _Session.playwright is None:
            from playwright.sync_api import sync_playwright

            _Session.playwright = sync_playwright().start()
        _Session.browser = _Session.playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
    return _Session.browser


def close_shared_chromium():
    if _Session.browser is not None:
        _Session.browser.close()
    if _Session.playwright is not None:
        _Session.playwright.stop()
    _Session.browser = _Session.playwright = None


class PageOpener:
    """What a test uses in place of a Browser of its own: `new_page(**options)` opens a page in a fresh context of
    the shared Chromium; `close()` closes those contexts."""

    def __init__(self):
        self._contexts = []

    def new_page(self, **options):
        context = shared_chromium().new_context(**options)
        self._contexts.append(context)
        return context.new_page()

    def close(self):
        while self._contexts:
            self._contexts.pop().close()


@contextlib.contextmanager
def browser():
    """`with browser() as b: page = b.new_page(...)`: pages of the shared Chromium, closed at the end."""
    opener = PageOpener()
    try:
        yield opener
    finally:
        opener.close()


@contextlib.contextmanager
def plugin_page(base_url, width=1280, height=900, downloads=False, hash_=""):
    """Yields (page, errors, dialogs) with the plugin's own page (plugin_entry.html) open and `ready` awaited.

    Opening the plugin page directly (not TensorBoard's whole UI) keeps tests fast on small machines; the
    iframe test in test_browser_head_view.py covers the embedding.
    """
    with browser() as opener:
        page = opener.new_page(viewport={"width": width, "height": height}, accept_downloads=downloads)
        errors, dialogs = [], []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

        def on_console(m):
            url = (m.location or {}).get("url", "")
            if m.type == "error" and "favicon" not in url:  # the bare plugin page has no favicon
                errors.append(f"{m.text} @ {url}")

        page.on("console", on_console)
        page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
        page.goto(base_url + "data/plugin_entry.html?name=attention" + hash_)  # hash_: a deep link
        page.wait_for_selector("body[data-state=ready]", timeout=60_000)
        yield page, errors, dialogs


def signature(page, selector="canvas"):
    return page.evaluate(CANVAS_SIGNATURE_JS, selector)


def wait_ready(page, view=None, timeout=30_000):
    """Waits until the shell reports `ready` (for `view` when given)."""
    sel = "body[data-state=ready]" + (f"[data-painted-view='{view}']" if view else "")
    page.wait_for_selector(sel, timeout=timeout)


def open_view(page, view):
    page.click(f".tba-tab[data-view='{view}']")
    wait_ready(page, view)
