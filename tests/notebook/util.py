"""Helpers for the notebook tests: read a fragment's embedded payload back, and open fragments in Chromium with
every network request aborted."""

import base64
import contextlib
import json
import re
import struct
import zlib

from tests.browser_util import CHROMIUM_ARGS, chromium_path

PAYLOAD = re.compile(r'<script type="application/x-tb-attention-payload" data-tba-payload="1">([^<]*)</script>')


def payload(html):
    """(header, {(route, frozenset(params)): body}) of the single view in `html`."""
    found = PAYLOAD.findall(html)
    assert len(found) == 1, f"expected one payload, found {len(found)}"
    raw = zlib.decompress(base64.b64decode(found[0]))
    assert raw[:4] == b"TBN1"
    (n,) = struct.unpack("<I", raw[4:8])
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]
    responses = {
        (e["route"], frozenset(e["params"].items())): body[e["offset"] : e["offset"] + e["length"]]
        for e in header["entries"]
    }
    return header, responses


def response(responses, route, **params):
    return responses[(route, frozenset((k, str(v)) for k, v in params.items()))]


HOST = "tb-attention-view-"  # the element's name starts so; Playwright's CSS engine pierces its open shadow root


@contextlib.contextmanager
def offline_page(width=1280, height=900):
    """Yields (page, errors, requests): a Chromium page that aborts every request but file:// and records it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            errors, requests = [], []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))

            def route(r):
                if r.request.url.startswith("file:"):
                    r.continue_()
                else:
                    requests.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            yield page, errors, requests
        finally:
            browser.close()


# Runs in the page: the state of every tb-attention output, in document order.
STATES_JS = """() => [...document.querySelectorAll('.tb-attention')].map((h) => {
  const b = h.shadowRoot && h.shadowRoot.querySelector('body');
  return b ? {state: b.dataset.state, view: b.dataset.paintedView, layer: b.dataset.paintedLayer,
              step: b.dataset.paintedStep, dark: b.classList.contains('tba-dark')} : null;
})"""

# The pixel signature of the canvases of output `i` (tests/browser_util.CANVAS_SIGNATURE_JS, inside a shadow root).
SIGNATURE_JS = """([i, sel]) => {
  const root = document.querySelectorAll('.tb-attention')[i].shadowRoot;
  let painted = 0, h = 2166136261;
  for (const c of root.querySelectorAll(sel)) {
    if (!c.width || !c.height) continue;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let j = 0; j < d.length; j += 4) {
      if (d[j + 3] !== 0) painted++;
      h = Math.imul(h ^ (d[j] | (d[j + 1] << 8) | (d[j + 2] << 16) | (d[j + 3] << 24)), 16777619) >>> 0;
    }
  }
  return {painted, hash: h};
}"""


def wait_all_ready(page, count, timeout=60_000):
    page.wait_for_function(
        "(n) => { const s = ("
        + STATES_JS
        + ")(); return s.length === n && s.every((x) => x && x.state === 'ready'); }",
        arg=count,
        timeout=timeout,
    )


def states(page):
    return page.evaluate(STATES_JS)


def signature(page, i, selector="canvas"):
    return page.evaluate(SIGNATURE_JS, [i, selector])


def nth(page, i, selector):
    """A locator for `selector` inside output `i`'s shadow root."""
    return page.locator(".tb-attention").nth(i).locator(selector)
