// The toolbar's Export buttons: PNG / SVG of the active view, an offline HTML snapshot of the step, its arrays
// as .npz. What is exported is what the views show (special tokens hidden stay hidden in the npz).

import type { Attention, QK } from "../data/api";
import { npzBlob, type NpyArray } from "./npz";
import { pngBlob, viewToCanvas, viewToSvg } from "./picture";
import { snapshotHtml, type SnapshotPart } from "./snapshot";
import type { View, ViewHost } from "../shell/view";
import { headIndex, layerIndex } from "../data/labels";

export interface ExportHost extends ViewHost {
  activeView(): View;
  fail(e: unknown): void;
}

function download(name: string, data: Blob): void {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(data);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

function stack(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function fileStem(host: ExportHost): string {
  const s = host.state;
  return `${s.probe.run}_${s.probe.tag}_step${s.step}_${host.activeView().id}`
    .replace(/[^A-Za-z0-9._-]+/g, "_")
    .slice(0, 120);
}

async function exportNpz(host: ExportHost): Promise<void> {
  const s = host.state;
  const m = s.manifest;
  const layers = await Promise.all(Array.from({ length: m.num_layers }, (_, l) => host.attention(s.step, l)));
  const a0 = layers[0] as Attention;
  const arrays: Record<string, NpyArray> = {
    attention: { dtype: "<f4", shape: [m.num_layers, a0.H, a0.Q, a0.K], data: stack(layers.map((a) => a.weights)) },
    tokens: { dtype: "<U", shape: [m.tokens.length], data: m.tokens },
    step: { dtype: "<i8", shape: [1], data: [s.step] },
    // The model's layer / head numbers of the stored ones: a logged subset (layers=[0, -1]) is not renumbered.
    layer_index: { dtype: "<i8", shape: [m.num_layers], data: layers.map((_, l) => layerIndex(m, l)) },
    head_index: {
      dtype: "<i8",
      shape: [m.num_layers, a0.H],
      data: layers.flatMap((_, l) => Array.from({ length: a0.H }, (_, h) => headIndex(m, l, h))),
    },
  };
  if (m.key_tokens) arrays["key_tokens"] = { dtype: "<U", shape: [m.key_tokens.length], data: m.key_tokens };
  if (m.has_qk) {
    const qks = await Promise.all(Array.from({ length: m.num_layers }, (_, l) => host.qk(s.step, l)));
    const q0 = qks[0] as QK;
    arrays["queries"] = {
      dtype: "<f4",
      shape: [m.num_layers, q0.H, q0.Q, q0.D],
      data: stack(qks.map((q) => q.queries)),
    };
    arrays["keys"] = { dtype: "<f4", shape: [m.num_layers, q0.Hkv, q0.K, q0.D], data: stack(qks.map((q) => q.keys)) };
  }
  download(`${fileStem(host)}.npz`, npzBlob(arrays));
}

/** The step's raw routes (every layer, q/k, statistics) plus the bundle, replayed offline by a fetch shim. */
async function exportHtml(host: ExportHost): Promise<void> {
  const s = host.state;
  const { run, tag } = s.probe;
  const json = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));
  const parts: SnapshotPart[] = [
    { route: "runs", params: {}, body: json({ runs: [{ run, probes: [tag] }] }), type: "application/json" },
    {
      route: "steps",
      params: { run, tag },
      body: json({ steps: [s.step], wall_times: [0] }),
      type: "application/json",
    },
    { route: "tokens", params: { run, tag, step: s.step } },
    { route: "head_stats", params: { run, tag } },
  ];
  for (let l = 0; l < s.manifest.num_layers; l++) {
    parts.push({ route: "attention", params: { run, tag, step: s.step, layer: l } });
    if (s.manifest.has_qk) parts.push({ route: "qk", params: { run, tag, step: s.step, layer: l } });
  }
  if (s.manifest.image) parts.push({ route: "image", params: { run, tag, step: s.step } }); // ViT overlay
  const title = `tb-attention: ${run} / ${tag} at step ${s.step}`;
  download(`${fileStem(host)}.html`, await snapshotHtml(title, parts, host.activeView().id, s.layer));
}

export function exportMenu(host: ExportHost): HTMLElement {
  const el = document.createElement("div");
  el.className = "control tba-export";
  const span = document.createElement("span");
  span.textContent = "Export";
  el.appendChild(span);
  const add = (id: string, text: string, title: string, run: () => Promise<void>): void => {
    const b = document.createElement("button");
    b.type = "button";
    b.id = id;
    b.textContent = text;
    b.title = title;
    b.addEventListener("click", () => {
      b.disabled = true;
      run()
        .catch((e) => host.fail(e))
        .finally(() => (b.disabled = false));
    });
    el.appendChild(b);
  };
  add("export-png", "PNG", "The current view as a PNG image", async () =>
    download(`${fileStem(host)}.png`, await pngBlob(viewToCanvas(host.activeView().root))),
  );
  add(
    "export-svg",
    "SVG",
    "The current view as SVG (vector text and lines; heatmaps and thumbnails as images)",
    async () =>
      download(`${fileStem(host)}.svg`, new Blob([viewToSvg(host.activeView().root)], { type: "image/svg+xml" })),
  );
  add("export-html", "HTML", "A standalone offline HTML snapshot of this step (all views, no server)", () =>
    exportHtml(host),
  );
  add("export-npz", "npz", "The raw arrays of this step for NumPy: attention [L,H,Q,K], tokens, q/k", () =>
    exportNpz(host),
  );
  return el;
}
