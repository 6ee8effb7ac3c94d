// The toolbar's Export buttons: PNG / SVG / PDF of the active view, an offline HTML snapshot of the step, its arrays
// as .npz. What is exported is what the views show (special tokens hidden stay hidden in the npz).

import type { QK } from "../data/api";
import { npzBlob, type NpyArray } from "./npz";
import { viewToPdf } from "./pdf";
import { pngBlob, viewToCanvas, viewToSvg } from "./picture";
import { snapshotHtml, type SnapshotPart } from "./snapshot";
import type { View, ViewHost } from "../shell/view";
import { headIndex, layerIndex, layerLabel } from "../data/labels";
import { VECTOR_CELLS } from "../draw/heatmapPaint";
import { storedHead, storedLayer } from "../shell/deepLink";
import { batchOf } from "../views/embedding/points";
import { CODE_WEIGHT, type TopK } from "../data/lod";
import { wholeLayerOk } from "../data/scale";
import { lodLoaders } from "../shell/lodLoaders";
import { headOk, lodParts, npzNote, partialLayers, shownHead } from "./longParts";

export interface ExportHost extends ViewHost {
  activeView(): View;
  fail(e: unknown): void;
  /** The deep link of what is shown (shell/deepLink.ts), for the snapshot to open at. */
  currentLink(): string;
}

/** The figure's title line: what a reader of the paper needs to know the picture is of. */
export function figureTitle(host: ExportHost): string {
  const s = host.state;
  const v = host.activeView();
  const p = v.linkParams?.() ?? {};
  const parts = [`${s.probe.run} / ${s.probe.tag}`, `step ${s.step}`, v.label];
  if (v.usesLayer !== false) parts.push(layerLabel(s.manifest, s.layer));
  if (p["head"]) parts.push(`head ${p["head"]}`);
  else if (p["heads"]) parts.push(`heads ${p["heads"]}`);
  else if (p["sel"]) parts.push(`layer ${p["sel"].replace(":", ", head ")}`);
  if (s.compare) parts.push(`Δ vs ${s.compare.label}`);
  return parts.join(" · ");
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
  const all = Array.from({ length: m.num_layers }, (_, l) => l);
  // Layers too long or "qk"-only to load whole (data/scale.ts) are left out of `attention`; what is available of
  // them (one head, top-k) is added below with a note saying what is missing (export/longParts.ts).
  const partial = partialLayers(m);
  const whole = all.filter((l) => !partial.includes(l));
  const layers = await Promise.all(whole.map((l) => host.attention(s.step, l)));
  const [H, Q, K] = layers[0] ? [layers[0].H, layers[0].Q, layers[0].K] : [m.num_heads, m.tokens.length, 0];
  const arrays: Record<string, NpyArray> = {
    tokens: { dtype: "<U", shape: [m.tokens.length], data: m.tokens },
    step: { dtype: "<i8", shape: [1], data: [s.step] },
    // The model's layer / head numbers of the stored ones: a logged subset (layers=[0, -1]) is not renumbered.
    layer_index: { dtype: "<i8", shape: [m.num_layers], data: all.map((l) => layerIndex(m, l)) },
    head_index: {
      dtype: "<i8",
      shape: [m.num_layers, m.num_heads],
      data: all.flatMap((l) => Array.from({ length: m.num_heads }, (_, h) => headIndex(m, l, h))),
    },
  };
  if (layers.length) {
    arrays["attention"] = { dtype: "<f4", shape: [layers.length, H, Q, K], data: stack(layers.map((a) => a.weights)) };
  }
  if (partial.length) {
    arrays["attention_layers"] = { dtype: "<i8", shape: [whole.length], data: whole };
    Object.assign(arrays, await partialArrays(host, partial));
  }
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

/** What the npz takes of layers it cannot take whole: the shown head of the current layer, its top-k, a note. */
async function partialArrays(host: ExportHost, partial: number[]): Promise<Record<string, NpyArray>> {
  const s = host.state;
  const m = s.manifest;
  const layer = partial.includes(s.layer) ? s.layer : (partial[0] as number);
  const head = shownHead(m, layer, host.activeView());
  const out: Record<string, NpyArray> = {};
  const one = headOk(m) ? await host.attentionHead(s.step, layer, head) : null;
  if (one) out["attention_head"] = { dtype: "<f4", shape: [one.Q, one.K], data: one.weights };
  const tk = await lodLoaders
    .topk(s.probe, s.step, layer)
    .catch(() =>
      Promise.all(Array.from({ length: m.num_heads }, (_, h) => lodLoaders.topk(s.probe, s.step, layer, h))),
    );
  const parts = Array.isArray(tk) ? tk : [tk];
  const first = parts[0] as TopK;
  const keys = parts.flatMap((p) => Array.from(p.keys.subarray(0, p.H * p.Q * p.k)));
  const weights = Float32Array.from(
    parts.flatMap((p) => Array.from(p.codes.subarray(0, p.H * p.Q * p.k))),
    (c) => CODE_WEIGHT[c] as number,
  );
  const shape = [m.num_heads, first.Q, first.k];
  out["topk_keys"] = { dtype: "<i8", shape, data: keys };
  out["topk_weights"] = { dtype: "<f4", shape, data: weights }; // decoded from the route's 8-bit codes
  out["partial_layer"] = { dtype: "<i8", shape: [2], data: [layer, head] };
  out["note"] = { dtype: "<U", shape: [1], data: [npzNote(m, partial, one ? { layer, head } : null)] };
  return out;
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
    if (!wholeLayerOk(s.manifest, l)) continue; // long or "qk" layers: what their views draw, from lodParts
    parts.push({ route: "attention", params: { run, tag, step: s.step, layer: l } });
    if (s.manifest.has_qk) parts.push({ route: "qk", params: { run, tag, step: s.step, layer: l } });
  }
  parts.push(...lodParts(s, host.activeView()));
  if (s.manifest.image) parts.push({ route: "image", params: { run, tag, step: s.step } }); // ViT overlay
  // Evolution's rollout (its default settings) and the Q/K tab's layouts that are ready (PCA always; the faithful
  // one when the server has it): what those tabs draw at this step. Anything else answers "not included".
  if (!s.manifest.key_tokens) {
    parts.push({ route: "rollout", params: { run, tag, step: s.step, fusion: "mean", residual: 0.5 } });
  }
  if (s.manifest.has_qk) {
    const batch = batchOf(tag);
    parts.push({ route: "embedding_info", params: { run, tag: batch } });
    for (const method of ["pca", "faithful"]) {
      const opts = { method, translate: "1", scale: "1" };
      // A layer at a time, as the tab asks for it (views/embedding/matrix_loader.ts).
      for (let layer = 0; layer < s.manifest.num_layers; layer++) {
        const at = { run, tag: batch, step: s.step, ...opts, layers: String(layer) };
        parts.push({ route: "embedding_matrix", params: at, wait: true });
      }
      const [l, h] = (host.activeView().linkParams?.()["sel"] ?? "").split(":");
      const sl = storedLayer(s.manifest, l);
      const sh = sl === null ? null : storedHead(s.manifest, sl, h);
      if (sl !== null && sh !== null) {
        const at = { run, tag: batch, step: s.step, layer: sl, head: sh, ...opts };
        parts.push({ route: "embedding", params: at, wait: true });
      }
    }
  }
  const title = `tb-attention: ${run} / ${tag} at step ${s.step}`;
  download(
    `${fileStem(host)}.html`,
    await snapshotHtml(title, parts, host.activeView().id, s.layer, host.currentLink()),
  );
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
  const scale = document.createElement("select");
  scale.id = "export-scale";
  scale.title = "PNG resolution: pixels per screen pixel";
  for (const f of ["1", "2", "4"]) {
    const o = document.createElement("option");
    o.value = f;
    o.textContent = `${f}×`;
    scale.appendChild(o);
  }
  scale.value = "2";
  el.appendChild(scale);
  add("export-png", "PNG", "The current view as a PNG figure: title line, colour bars and axes, cropped", async () => {
    const fig = { title: figureTitle(host), scale: Number(scale.value) };
    download(`${fileStem(host)}.png`, await pngBlob(viewToCanvas(host.activeView().root, fig)));
  });
  add(
    "export-svg",
    "SVG",
    "The current view as SVG: vector text, axes, colour bars and lines; heatmaps as vector cells up to " +
      `${VECTOR_CELLS.toLocaleString("en")} cells (128 × 128), else an embedded image`,
    async () => {
      const svg = viewToSvg(host.activeView().root, { title: figureTitle(host) });
      download(`${fileStem(host)}.svg`, new Blob([svg], { type: "image/svg+xml" }));
    },
  );
  add(
    "export-pdf",
    "PDF",
    "The current view as a vector PDF page, as the SVG: text as text, lines and heatmap cells as vector shapes",
    async () => {
      download(`${fileStem(host)}.pdf`, await viewToPdf(host.activeView().root, { title: figureTitle(host) }));
    },
  );
  add("export-html", "HTML", "A standalone offline HTML snapshot of this step (all views, no server)", () =>
    exportHtml(host),
  );
  add(
    "export-npz",
    "npz",
    "The raw arrays of this step for NumPy: attention [L,H,Q,K], tokens, q/k (of a long or q/k-only layer: " +
      "the shown head, its top-k and a note)",
    () => exportNpz(host),
  );
  return el;
}
