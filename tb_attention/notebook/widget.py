"""The live notebook view (`pip install 'tb-attention[live]'`): an anywidget whose views ask the kernel for each
route response over comm messages (binary buffers), so a long run's steps are read from the logdir as the slider
reaches them instead of being embedded. The static output (api.NotebookView) stays the default: a live view is blank
without its kernel (after saving, in nbconvert, in viewers).

The widget's ES module is a few lines: it imports the bundle (sent once, as the `bundle` trait) afresh for each view,
so two live views keep apart as static outputs do (frontend/src/notebook/widget.ts)."""

import collections
import urllib.parse
from importlib import resources

import anywidget
import traitlets

from tb_attention.format import manifest as manifest_mod
from tb_attention.format import metadata
from tb_attention.notebook import lod_parts, payload
from tb_attention.notebook import logdir as logdir_mod

_ESM = """
export default {
  async render({ model, el }) {
    const source = new TextEncoder().encode(model.get("bundle"));
    const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
    try {
      const m = await import(url);
      m.widgetRender(model, el, source);
    } finally {
      URL.revokeObjectURL(url);
    }
  },
};
"""

_STEP_CACHE = 8  # decoded steps kept in the kernel


class LogdirSource:
    """Answers the plugin's routes from a logdir's event files (scanned on `runs`, i.e. at start and on Reload)."""

    def __init__(self, logdir, probe=None, run=None):
        self.logdir, self.probe, self.run = logdir, probe, run
        self._steps: collections.OrderedDict = collections.OrderedDict()
        self.rescan()

    def rescan(self):
        self.runs = logdir_mod.scan(self.logdir)
        self._steps.clear()

    def has_qk(self):
        """Whether the last step of any shown probe logged queries/keys (the neuron view is hidden otherwise)."""
        for run, tags in logdir_mod.probe_tags(self.runs).items():
            for tag in filter(self._wanted, tags):
                data = self.runs[run][tag].data
                try:
                    if manifest_mod.decode(data[max(data)][1][metadata.MANIFEST_INDEX]).has_qk:
                        return True
                except (manifest_mod.ManifestError, IndexError):
                    continue
        return False

    def _series(self, run, tag):
        series = self.runs.get(run, {}).get(tag)
        if series is None or series.content.get("kind") != metadata.KIND_PROBE:
            raise KeyError(f"no probe {tag!r} in run {run!r}")
        return series

    def _step(self, run, tag, step):
        key = (run, tag, step)
        if key not in self._steps:
            series = self._series(run, tag)
            if step not in series.data:
                raise KeyError(f"step {step} of {run} / {tag} is not logged")
            self._steps[key] = logdir_mod.step_from_blobs(series.data[step][1], f"{run} / {tag} step {step}")
            while len(self._steps) > _STEP_CACHE:
                self._steps.popitem(last=False)
        self._steps.move_to_end(key)
        return self._steps[key]

    def answer(self, url):
        """-> (status, content type, body) for one request of the app (a route and its query)."""
        parsed = urllib.parse.urlsplit(url)
        route = parsed.path.lstrip("/")
        q = dict(urllib.parse.parse_qsl(parsed.query))
        try:
            return 200, *self._answer(route, q)
        except KeyError as e:
            return 404, "text/plain", str(e.args[0] if e.args else e).encode()
        except ValueError as e:
            return 422, "text/plain", str(e).encode()

    def _answer(self, route, q):
        if route == "runs":
            self.rescan()
            tags = logdir_mod.probe_tags(self.runs)
            runs = [
                {"run": r, "probes": [t for t in ts if self._wanted(t)], "problems": []}
                for r, ts in tags.items()
                if self.run is None or r == self.run
            ]
            return "application/json", payload._json({"runs": [r for r in runs if r["probes"]]})
        run, tag = q["run"], q["tag"]
        if route == "steps":
            data = self._series(run, tag).data
            steps = sorted(data)
            return "application/json", payload._json({"steps": steps, "wall_times": [data[s][0] for s in steps]})
        if route == "head_stats":
            stats = logdir_mod.head_stats_of(self.runs.get(run, {}), tag)
            if stats is None:
                raise KeyError(f"no head statistics for probe {tag!r} in run {run!r}")
            return "application/octet-stream", stats
        s = self._step(run, tag, int(q["step"]))
        if route == "tokens":
            return "application/json", s.tokens_json()
        if route == "image":
            if s.image is None:
                raise KeyError("this step has no image")
            return "image/png", s.image
        layer = int(q["layer"])
        if not 0 <= layer < len(s.layers):
            raise KeyError(f"layer {layer} out of range: this probe has {len(s.layers)} layers")
        if route == "attention":
            return "application/octet-stream", s.layers[layer].dense()
        if route == "qk":
            if not s.qk:
                raise KeyError("queries/keys were not logged for this step")
            return "application/octet-stream", s.qk[layer]
        if route in ("lod", "topk", "tile"):  # long probes: what the views draw instead of whole layers
            return "application/octet-stream", lod_parts.answer(s.layers[layer], route, q)
        raise KeyError(f"{route}: not available in a live notebook view")

    def _wanted(self, tag):
        if self.probe is None:
            return True
        return tag == self.probe or tag.rsplit("/", 1)[0] == self.probe


class LiveView(anywidget.AnyWidget):
    """show(logdir, live=True): every view, every logged step, read from the logdir while the kernel runs."""

    _esm = _ESM
    bundle = traitlets.Unicode().tag(sync=True)
    options = traitlets.Dict().tag(sync=True)

    def __init__(self, logdir, *, probe=None, run=None, view="head", layer=None, theme=None):
        source = LogdirSource(logdir, probe, run)
        if not logdir_mod.probe_tags(source.runs):
            raise ValueError(f"no attention probes in {logdir!r} (log some with AttentionWriter)")
        text = resources.files("tb_attention").joinpath("static/index.js").read_text("utf-8")
        hide = ["embedding"] + ([] if source.has_qk() else ["neuron"])
        options = {"view": view, "layer": 0 if layer is None else int(layer), "theme": theme, "hide": hide}
        super().__init__(bundle=text, options=options)
        self.source = source
        self.on_msg(self._on_msg)

    def _on_msg(self, _widget, content, _buffers):
        if not isinstance(content, dict) or content.get("type") != "request":
            return
        status, ctype, body = self.source.answer(str(content.get("url", "")))
        reply = {"type": "response", "id": content.get("id"), "status": status, "content_type": ctype}
        self.send(reply, buffers=[body])
