"""The HTML of one notebook output: a custom element holding the payload, the bundle (compressed) and a small static
loader. No network, no require.js, no global name: the only page-wide name is the custom element's, which carries
the bundle's digest, so two tb-attention versions in one notebook do not collide either.

    <tb-attention-view-<digest>>                       the output's element; the app mounts in its shadow root
      <script type="application/x-tb-attention-payload">  base64 of the zlib payload (payload.py): no markup inside
      <div>… needs JavaScript …</div>                   shown only where scripts do not run (untrusted notebook)
    </tb-attention-view-<digest>>
    <script type="application/x-tb-attention-bundle">  base64 of the zlib-compressed frontend bundle
    <script>loader</script>                            defines the element once per page, from the first bundle copy

Every output carries its bundle copy: a notebook may be opened with earlier outputs cleared, JupyterLab may not render
cells that are scrolled away, and Colab puts each output in its own frame. The bundle is decompressed and defined
once per page; each output then imports its own module instance of it (a fresh blob: URL), so the views' state stays
apart (frontend/src/shell/page.ts).
"""

import base64
import functools
import hashlib
import zlib
from importlib import resources


@functools.lru_cache(maxsize=1)
def bundle():
    """(digest, base64 of the zlib-compressed bundle, compressed size) of tb_attention/static/index.js."""
    src = resources.files("tb_attention").joinpath("static/index.js").read_bytes()
    packed = zlib.compress(src, 9)
    return hashlib.sha256(src).hexdigest()[:16], base64.b64encode(packed).decode("ascii"), len(packed)


# Static text (no user data): only the digest, 16 hex digits, is substituted in.
_LOADER = """(function () {
  "use strict";
  var NAME = "tb-attention-view-@DIGEST@";
  if (!window.customElements || customElements.get(NAME)) return;
  var holder = document.querySelector('script[data-tba-bundle="@DIGEST@"]');
  if (!holder) return;
  var bin = atob(holder.textContent.replace(/\\s+/g, ""));
  var packed = new Uint8Array(bin.length);
  for (var i = 0; i < bin.length; i++) packed[i] = bin.charCodeAt(i);
  var stream = new Blob([packed]).stream().pipeThrough(new DecompressionStream("deflate"));
  new Response(stream).arrayBuffer().then(function (buf) {
    if (customElements.get(NAME)) return;
    var src = new Uint8Array(buf);
    var started = new WeakSet();
    customElements.define(NAME, class extends HTMLElement {
      connectedCallback() {
        if (started.has(this)) return; // moved or re-attached by the notebook: the view is already there
        started.add(this);
        var host = this;
        // While a page is still being parsed (nbconvert's HTML, a saved page), the element can be connected before
        // its payload's text has all arrived: the element after the payload exists once it has, else wait for the
        // document to be parsed.
        var data = host.querySelector("script[data-tba-payload]");
        if (document.readyState === "loading" && !(data && data.nextElementSibling)) {
          document.addEventListener("DOMContentLoaded", function () { start(host); }, { once: true });
        } else {
          start(host);
        }
      }
    });
    function start(host) {
      var data = host.querySelector("script[data-tba-payload]");
      var url = URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
      import(url)
        .then(function (m) {
          URL.revokeObjectURL(url);
          return m.mountNotebook(host, data ? data.textContent : "", function () { return Promise.resolve(src); });
        })
        .catch(function (e) {
          var note = document.createElement("div");
          note.style.cssText = "color:#b71c1c;font:13px sans-serif;padding:8px";
          note.textContent = "tb-attention could not show this view: " + (e && e.message ? e.message : e);
          (host.shadowRoot || host).appendChild(note);
        });
    }
  });
})();
"""

_FALLBACK = (
    "tb-attention view: it appears when this output's JavaScript runs (trust the notebook, or run the cell again)."
)


def element_name():
    return f"tb-attention-view-{bundle()[0]}"


def fragment(payload, *, with_bundle=True):
    """The output's HTML for a compressed payload (payload.encode)."""
    digest, packed, _ = bundle()
    name = element_name()
    data = base64.b64encode(payload).decode("ascii")  # base64 only: nothing in it can close a tag
    parts = [
        f'<{name} class="tb-attention" style="display:block">',
        f'<script type="application/x-tb-attention-payload" data-tba-payload="1">{data}</script>',
        f'<div style="font:13px sans-serif;color:#757575;padding:8px">{_FALLBACK}</div>',
        f"</{name}>",
    ]
    if with_bundle:
        parts.append(f'<script type="application/x-tb-attention-bundle" data-tba-bundle="{digest}">{packed}</script>')
    parts.append("<script>" + _LOADER.replace("@DIGEST@", digest) + "</script>")
    return "\n".join(parts)


def overhead():
    """Bytes of a fragment besides its payload."""
    return len(fragment(b"")) + 64


def document(fragment_html, title):
    """A standalone page around a fragment (`.save()`)."""
    esc = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">'
        f"<title>{esc}</title></head>\n<body>\n{fragment_html}\n</body></html>\n"
    )
