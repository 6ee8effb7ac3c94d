// Q/K embedding view (AttentionViz-style joint query-key embedding, docs/embedding.md).
// Matrix mode: every layer × head as a small scatter of the probe batch's queries (green) and keys (pink), with
// its faithfulness score; click one to open the single-head view. Single-head mode: one head large, colour by
// kind / position / token / norm / probe, hover for the token and its sentence, click a query to draw lines to
// the keys it attends to most (real attention, from the attention route), token search. PCA paints at once; the
// default "faithful" layout (and t-SNE/UMAP) is computed by the server in the background (progress shown) and
// animates in; moving the step slider animates points because layouts are aligned across steps.

import { HttpError } from "../api";
import type { ProbeRef, SharedState, View, ViewHost } from "../view";
import {
  fetchBatchInfo,
  fetchHead,
  fetchMatrix,
  isPending,
  METHOD_LABEL,
  METHODS,
  type BatchInfo,
  type HeadLayout,
  type MatrixLayout,
  type Method,
  type Options,
} from "./embeddingApi";

const Q_COLOR = "rgb(95,185,108)";
const K_COLOR = "rgb(227,55,143)";
const Q_RGB: [number, number, number] = [95, 185, 108];
const K_RGB: [number, number, number] = [227, 55, 143];
const CELL = 104; // matrix cell, CSS px
const SINGLE = 620; // single-head canvas, CSS px
const POLL_MS = 400;
const ANIM_MS = 350;

type ColorBy = "kind" | "position" | "token" | "norm" | "probe";

interface Points {
  /** Per point (queries first, then keys): probe index, position in its sequence, token, sequence length. */
  probe: Int32Array;
  pos: Int32Array;
  token: string[];
  len: Int32Array;
  numQueries: number;
  /** Index of the first key of each probe. */
  keyStart: number[];
}

let stylesInstalled = false;
function installEmbeddingStyles(): void {
  if (stylesInstalled) return;
  stylesInstalled = true;
  const style = document.createElement("style");
  style.textContent = `
.emb-view { font: 13px system-ui, sans-serif; color: #222; }
.emb-controls { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; margin: 6px 0 8px; }
.emb-controls label { display: inline-flex; gap: 4px; align-items: center; }
.emb-status { color: #555; min-width: 14em; }
.emb-status progress { width: 90px; vertical-align: middle; margin-left: 6px; }
.emb-matrix { display: grid; gap: 4px; align-items: start; justify-content: start; }
.emb-cell { position: relative; border: 1px solid #ddd; border-radius: 3px; cursor: pointer; background: #fff; }
.emb-cell:hover { border-color: #555; }
.emb-cell canvas { display: block; }
.emb-cell-label { position: absolute; left: 3px; top: 1px; font-size: 10px; color: #444; pointer-events: none; }
.emb-cell-score { position: absolute; right: 3px; bottom: 1px; font-size: 10px; color: #333; pointer-events: none; }
.emb-row-label, .emb-col-label { font-size: 11px; color: #555; align-self: center; text-align: center; }
.emb-single { display: flex; gap: 14px; align-items: flex-start; }
.emb-single canvas { border: 1px solid #ddd; border-radius: 3px; cursor: crosshair; }
.emb-side { max-width: 360px; display: flex; flex-direction: column; gap: 8px; }
.emb-badge { font-size: 14px; padding: 6px 8px; border-radius: 4px; background: #f3f3f3; }
.emb-badge b { font-size: 16px; }
.emb-badge.good { background: #e3f4e6; } .emb-badge.poor { background: #fbe7ea; }
.emb-context { line-height: 1.7; }
.emb-context span { padding: 1px 2px; border-radius: 2px; }
.emb-context span.emb-hit { background: #ffe58a; font-weight: bold; }
.emb-note { white-space: pre-line; color: #444; padding: 12px 4px; }
.emb-tip { position: fixed; pointer-events: none; background: rgba(30,30,30,.92); color: #fff; padding: 4px 7px;
  border-radius: 4px; font-size: 12px; z-index: 10; display: none; max-width: 320px; }
.emb-legend { color: #555; font-size: 12px; }
.emb-keys { font-size: 12px; }
.emb-keys div { display: flex; gap: 6px; align-items: center; }
.emb-keys span.bar { display: inline-block; height: 8px; background: rgb(227,55,143); border-radius: 2px; }
.emb-legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin: 0 3px 0 8px; }
`;
  document.head.appendChild(style);
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmt(x: number | null | undefined): string {
  return x === null || x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(2);
}

/** The probe batch a probe belongs to: `sents/3` → `sents`; a probe without a numeric suffix is its own batch. */
export function batchOf(tag: string): string {
  const m = /^(.*)\/\d+$/.exec(tag);
  return m && m[1] ? m[1] : tag;
}

function hashHue(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h % 360;
}

export class EmbeddingView implements View {
  readonly id = "embedding";
  readonly label = "Q/K embedding";
  readonly usesLayer = false;
  readonly root = el("div", "emb-view");
  private readonly methodSelect = el("select");
  private readonly translateBox = el("input");
  private readonly scaleBox = el("input");
  private readonly colorSelect = el("select");
  private readonly search = el("input");
  private readonly backButton = el("button", "emb-back", "← All heads");
  private readonly status = el("span", "emb-status");
  private readonly matrixEl = el("div", "emb-matrix");
  private readonly singleEl = el("div", "emb-single");
  private readonly canvas = el("canvas", "emb-canvas");
  private readonly badge = el("div", "emb-badge");
  private readonly title = el("div");
  private readonly legend = el("div", "emb-legend");
  private readonly context = el("div", "emb-context");
  private readonly keyList = el("div", "emb-keys");
  private readonly tip = el("div", "emb-tip");
  private readonly note = el("div", "emb-note");
  private cells: HTMLCanvasElement[] = [];
  private cellScores: HTMLElement[] = [];
  private matrixShape = "";
  private host: ViewHost | null = null;
  private state: SharedState | null = null;
  private info: BatchInfo | null = null;
  private infoKey = "";
  private points: Points | null = null;
  private mode: "matrix" | "single" = "matrix";
  private selected = { layer: 0, head: 0 };
  private opts: Options = { method: "faithful", translate: true, scale: true };
  private colorBy: ColorBy = "kind";
  private gen = 0;
  private layout: HeadLayout | null = null;
  private drawn: Float32Array | null = null; // positions on screen now (world coords), for animation
  private view = { x0: 0, y0: 0, k: 1 };
  private hover = -1;
  private query = -1;
  private lines: { key: number; w: number }[] = [];
  private matches: Set<number> | null = null;
  private anim = 0;

  constructor() {
    installEmbeddingStyles();
    this.root.dataset["embMode"] = "matrix";
    const controls = el("div", "emb-controls");
    for (const m of METHODS) {
      const o = el("option", undefined, METHOD_LABEL[m]);
      o.value = m;
      this.methodSelect.appendChild(o);
    }
    this.methodSelect.className = "emb-method";
    this.methodSelect.value = this.opts.method;
    this.translateBox.type = "checkbox";
    this.translateBox.checked = true;
    this.translateBox.className = "emb-translate";
    this.scaleBox.type = "checkbox";
    this.scaleBox.checked = true;
    this.scaleBox.className = "emb-scale";
    for (const [v, t] of [
      ["kind", "query / key"],
      ["position", "position"],
      ["token", "token"],
      ["norm", "norm"],
      ["probe", "probe input"],
    ] as const) {
      const o = el("option", undefined, t);
      o.value = v;
      this.colorSelect.appendChild(o);
    }
    this.colorSelect.className = "emb-color";
    this.search.type = "search";
    this.search.placeholder = "search tokens";
    this.search.className = "emb-search";
    this.backButton.type = "button";
    this.backButton.style.display = "none";
    const lab = (text: string, input: HTMLElement, title: string): HTMLLabelElement => {
      const l = el("label");
      l.title = title;
      if (input instanceof HTMLSelectElement) l.append(document.createTextNode(text), input);
      else l.append(input, document.createTextNode(text));
      return l;
    };
    controls.append(
      this.backButton,
      lab("Layout", this.methodSelect, "Projection to 2-D (faithful: distance ranks keys as q·k does)"),
      lab(" centre keys", this.translateBox, "Translate keys so their centroid is the queries' (softmax unchanged)"),
      lab(" equal spread", this.scaleBox, "Scale q by c and k by 1/c so both clouds spread equally (q·k unchanged)"),
      lab("Colour", this.colorSelect, "Point colour"),
      this.search,
      this.status,
    );
    this.canvas.width = SINGLE;
    this.canvas.height = SINGLE;
    const side = el("div", "emb-side");
    side.append(this.title, this.badge, this.legend, this.context, this.keyList);
    this.singleEl.append(this.canvas, side);
    this.singleEl.style.display = "none";
    this.note.style.display = "none";
    this.root.append(controls, this.note, this.matrixEl, this.singleEl, this.tip);

    const rerun = (): void => {
      this.opts = {
        method: this.methodSelect.value as Method,
        translate: this.translateBox.checked,
        scale: this.scaleBox.checked,
      };
      void this.refresh();
    };
    this.methodSelect.addEventListener("change", rerun);
    this.translateBox.addEventListener("change", rerun);
    this.scaleBox.addEventListener("change", rerun);
    this.colorSelect.addEventListener("change", () => {
      this.colorBy = this.colorSelect.value as ColorBy;
      this.updateLegend();
      this.draw();
    });
    this.search.addEventListener("input", () => {
      this.updateSearch();
      this.draw();
    });
    this.backButton.addEventListener("click", () => this.setMode("matrix"));
    this.matrixEl.addEventListener("click", (e) => {
      const cell = (e.target as Element).closest<HTMLElement>(".emb-cell");
      if (!cell) return;
      this.selected = { layer: Number(cell.dataset["layer"]), head: Number(cell.dataset["head"]) };
      this.setMode("single");
    });
    this.canvas.addEventListener("mousemove", (e) => this.onMove(e));
    this.canvas.addEventListener("mouseleave", () => {
      this.hover = -1;
      this.tip.style.display = "none";
    });
    this.canvas.addEventListener("click", (e) => void this.onClick(e));
    (window as unknown as Record<string, unknown>)["__tbaEmb"] = {
      /** Client coordinates of point i in the single-head canvas (tests). */
      screenOf: (i: number): [number, number] | null => this.screenOf(i),
      numQueries: (): number => this.points?.numQueries ?? 0,
    };
  }

  // -- shell contract ------------------------------------------------------------------------------------
  async show(host: ViewHost): Promise<void> {
    this.host = host;
    const state = host.state;
    this.state = null;
    if (!state.manifest.has_qk) {
      this.message(
        "Queries and keys were not logged for this probe, so there is no Q/K embedding.\n" +
          "Log a probe batch with add_attention_batch(prefix, attentions, tokens=..., queries=..., keys=...) " +
          "(or add_attention(..., queries=q, keys=k), or the capture API) to see it.",
      );
      return;
    }
    try {
      await this.showBatch(host, state);
    } catch (e) {
      if (e instanceof HttpError && e.status === 404 && host.isCurrent(state)) {
        this.message(e.message);
        return;
      }
      throw e;
    }
  }

  private message(text: string): void {
    this.gen++;
    this.note.textContent = text;
    this.note.style.display = "";
    this.matrixEl.style.display = "none";
    this.singleEl.style.display = "none";
  }

  private async showBatch(host: ViewHost, state: SharedState): Promise<void> {
    this.note.style.display = "none";
    const run = state.probe.run;
    const tag = batchOf(state.probe.tag);
    const key = `${run}\u0000${tag}`;
    if (key !== this.infoKey || !this.info) {
      const info = await fetchBatchInfo(run, tag);
      if (!host.isCurrent(state)) return;
      this.info = info;
      this.infoKey = key;
      this.points = buildPoints(info);
      this.layout = null;
      this.drawn = null;
      this.query = -1;
      this.lines = [];
      for (const m of METHODS) {
        const o = this.methodSelect.querySelector<HTMLOptionElement>(`option[value=${m}]`);
        if (o) {
          o.disabled = !info.methods[m];
          o.title = info.methods[m] ? "" : "not installed on the TensorBoard server";
        }
      }
    }
    const info = this.info;
    if (!info.has_qk) {
      this.message(`Queries and keys were not logged for every probe of batch ${JSON.stringify(tag)}.`);
      return;
    }
    if (!info.steps.includes(state.step)) {
      this.message(
        `Step ${state.step} is not logged for every probe of batch ${JSON.stringify(tag)} ` +
          `(${info.probes.length} probes); steps they share: ${info.steps.slice(0, 20).join(", ")}` +
          (info.steps.length > 20 ? ", …" : ""),
      );
      return;
    }
    this.state = state;
    if (this.selected.layer >= info.num_layers || this.selected.head >= info.num_heads) this.selected = { layer: 0, head: 0 };
    this.updateSearch();
    this.updateLegend();
    const tokens = this.points ? this.points.numQueries : 0;
    host.setSummary(
      `${info.probes.length} probe input${info.probes.length === 1 ? "" : "s"} · ${tokens} tokens · ` +
        `${info.num_layers} layers × ${info.num_heads} heads · ${this.points ? this.points.token.length : 0} points per head`,
    );
    await this.refresh();
  }

  hide(): void {
    this.gen++;
    this.tip.style.display = "none";
  }

  onKey(e: KeyboardEvent): boolean {
    if (e.key === "Escape" && this.mode === "single") {
      this.setMode("matrix");
      return true;
    }
    return false;
  }

  // -- modes ---------------------------------------------------------------------------------------------
  private setMode(mode: "matrix" | "single"): void {
    this.mode = mode;
    this.root.dataset["embMode"] = mode;
    this.backButton.style.display = mode === "single" ? "" : "none";
    this.matrixEl.style.display = mode === "matrix" ? "" : "none";
    this.singleEl.style.display = mode === "single" ? "" : "none";
    if (mode === "single") {
      this.query = -1;
      this.lines = [];
      this.drawn = null;
      this.layout = null;
    }
    void this.refresh();
  }

  /** Paints the current mode; PCA (or a cached layout) first, then polls for a nonlinear layout. */
  private async refresh(): Promise<void> {
    const gen = ++this.gen;
    const host = this.host;
    const state = this.state;
    const info = this.info;
    if (!host || !state || !info) return;
    this.matrixEl.style.display = this.mode === "matrix" ? "" : "none";
    this.singleEl.style.display = this.mode === "single" ? "" : "none";
    const opts = { ...this.opts };
    const run = state.probe.run;
    const live = (): boolean => gen === this.gen && host.isCurrent(state);
    const load = (o: Options): Promise<MatrixLayout | HeadLayout | { pending: true; state: string; progress: number }> =>
      this.mode === "matrix"
        ? fetchMatrix(run, info.tag, state.step, o)
        : fetchHead(run, info.tag, state.step, this.selected.layer, this.selected.head, o);
    // The matrix paints PCA first (milliseconds per head) and asks for the slower layout afterwards, so 72 heads
    // are on screen before the server starts the background job.
    const pcaFirst = this.mode === "matrix" && opts.method !== "pca";
    if (pcaFirst) {
      const pca = await load({ ...opts, method: "pca" });
      if (!live()) return;
      if (!isPending(pca)) this.paint(pca);
    }
    let first = await load(opts);
    if (!live()) return;
    const keepOld = !pcaFirst && this.mode === "single" && this.drawn !== null;
    if (keepOld) {
      // A head is on screen (e.g. the step changed): keep it until the new layout arrives, a fraction of a second
      // for "faithful", so the points animate once from the old step to the new one. Give up waiting after 2 s.
      const deadline = performance.now() + 2000;
      while (isPending(first) && performance.now() < deadline) {
        this.setStatus(opts.method, first.progress);
        await new Promise((r) => window.setTimeout(r, 120));
        if (!live()) return;
        first = await load(opts);
        if (!live()) return;
      }
    }
    if (isPending(first)) {
      // Show PCA while the requested layout is computed (unless a head stays on screen, above).
      if (!pcaFirst && !keepOld) {
        const pca = await load({ ...opts, method: "pca" });
        if (!live()) return;
        if (!isPending(pca)) this.paint(pca);
      }
      this.setStatus(opts.method, first.progress);
      const poll = async (): Promise<void> => {
        if (!live()) return;
        let next;
        try {
          next = await load(opts);
        } catch (e) {
          if (live()) this.status.textContent = (e as Error).message;
          return;
        }
        if (!live()) return;
        if (isPending(next)) {
          this.setStatus(opts.method, next.progress);
          window.setTimeout(() => void poll(), POLL_MS);
        } else {
          this.status.textContent = "";
          this.paint(next);
        }
      };
      window.setTimeout(() => void poll(), POLL_MS);
      return;
    }
    this.status.textContent = "";
    this.paint(first);
  }

  private setStatus(method: Method, progress: number): void {
    this.status.textContent = `computing ${METHOD_LABEL[method].replace(" (default)", "")} layout… `;
    const p = el("progress");
    p.max = 1;
    p.value = progress;
    this.status.appendChild(p);
  }

  private paint(layout: MatrixLayout | HeadLayout): void {
    if ("L" in layout) this.paintMatrix(layout);
    else this.setLayout(layout);
  }

  // -- matrix --------------------------------------------------------------------------------------------
  private buildMatrix(L: number, H: number): void {
    const key = `${L}x${H}`;
    if (key === this.matrixShape) return;
    this.matrixShape = key;
    const dpr = window.devicePixelRatio || 1;
    this.matrixEl.style.gridTemplateColumns = `auto repeat(${H}, ${CELL + 2}px)`;
    const children: HTMLElement[] = [el("div")];
    for (let h = 0; h < H; h++) children.push(el("div", "emb-col-label", `H${h}`));
    this.cells = [];
    this.cellScores = [];
    for (let l = 0; l < L; l++) {
      children.push(el("div", "emb-row-label", `L${l}`));
      for (let h = 0; h < H; h++) {
        const cell = el("div", "emb-cell");
        cell.dataset["layer"] = String(l);
        cell.dataset["head"] = String(h);
        cell.title = `Layer ${l}, head ${h}: click for the single-head view`;
        const c = el("canvas");
        c.width = Math.round(CELL * dpr);
        c.height = Math.round(CELL * dpr);
        c.style.width = `${CELL}px`;
        c.style.height = `${CELL}px`;
        const score = el("div", "emb-cell-score");
        cell.append(c, el("div", "emb-cell-label", `L${l} H${h}`), score);
        this.cells.push(c);
        this.cellScores.push(score);
        children.push(cell);
      }
    }
    this.matrixEl.replaceChildren(...children);
  }

  private paintMatrix(m: MatrixLayout): void {
    this.buildMatrix(m.L, m.H);
    const t0 = performance.now();
    for (let c = 0; c < m.L * m.H; c++) {
      const canvas = this.cells[c];
      if (!canvas) continue;
      const ctx = canvas.getContext("2d");
      if (!ctx) continue;
      const W = canvas.width;
      const img = ctx.createImageData(W, canvas.height);
      const d = img.data;
      const pad = Math.round(W * 0.06);
      const span = W - 2 * pad - 2;
      const base = c * m.N * 2;
      const r = Math.max(1, Math.round(W / 70));
      for (let n = 0; n < m.N; n++) {
        const i = interleave(n, m.numQueries, m.N);
        const px = pad + Math.round(((m.xy[base + 2 * i] as number) / 255) * span);
        const py = pad + Math.round((1 - (m.xy[base + 2 * i + 1] as number) / 255) * span);
        const rgb = i < m.numQueries ? Q_RGB : K_RGB;
        for (let dy = 0; dy <= r; dy++) {
          let o = ((py + dy) * W + px) * 4;
          for (let dx = 0; dx <= r; dx++, o += 4) {
            d[o] = rgb[0];
            d[o + 1] = rgb[1];
            d[o + 2] = rgb[2];
            d[o + 3] = 200;
          }
        }
      }
      ctx.putImageData(img, 0, 0);
      const score = this.cellScores[c];
      if (score) {
        score.textContent = `ρ ${fmt(m.faithfulness[c])}`;
        score.title = `faithfulness (mean per-query Spearman of 2-D distance vs q·k): ${fmt(m.faithfulness[c])}; ` +
          `original space ${fmt(m.original[c])}; q/k mixing ${fmt(m.mixing[c])}`;
      }
    }
    this.root.dataset["embMethod"] = m.method;
    this.root.dataset["embPaintMs"] = (performance.now() - t0).toFixed(1);
    const mean = Array.from(m.faithfulness).reduce((a, b) => a + b, 0) / Math.max(1, m.faithfulness.length);
    this.root.dataset["embMeanFaithfulness"] = mean.toFixed(3);
  }

  // -- single head ---------------------------------------------------------------------------------------
  private setLayout(layout: HeadLayout): void {
    const prev = this.drawn;
    this.layout = layout;
    const info = this.info;
    const s = this.selected;
    this.title.textContent = `Layer ${s.layer}, head ${s.head}` +
      (info && info.num_kv_heads && info.num_kv_heads < info.num_heads
        ? ` (key head ${Math.floor(s.head / (info.num_heads / info.num_kv_heads))})`
        : "");
    const f = layout.faithfulness;
    this.badge.className = `emb-badge ${f === null ? "" : f >= 0.6 ? "good" : f < 0.3 ? "poor" : ""}`;
    this.badge.replaceChildren(
      document.createTextNode(`${METHOD_LABEL[layout.method].replace(" (default)", "")} · faithfulness `),
      el("b", undefined, fmt(f)),
      el("br"),
      document.createTextNode(
        `original space ${fmt(layout.original)} · q/k mixing ${fmt(layout.mixing)}` +
          (f !== null && f < 0.3 ? " · distances here say little about attention" : ""),
      ),
    );
    this.badge.title =
      "Faithfulness: for each query, the Spearman correlation between closeness in this picture and q·k over " +
      "the keys it may attend to, averaged (1 = the picture ranks keys exactly as attention does). Original " +
      "space: the same score for distances in the normalised d_head-dimensional space. Mixing: 1 = queries " +
      "and keys interleave, 0 = separate islands.";
    this.root.dataset["embMethod"] = layout.method;
    this.root.dataset["embFaithfulness"] = fmt(f);
    const next = layout.xy;
    this.fit(prev && prev.length === next.length ? [prev, next] : [next]);
    cancelAnimationFrame(this.anim);
    if (prev && prev.length === next.length) {
      const start = performance.now();
      const cur = new Float32Array(next.length);
      const step = (now: number): void => {
        const t = Math.min(1, (now - start) / ANIM_MS);
        const e = t * t * (3 - 2 * t);
        for (let i = 0; i < cur.length; i++) cur[i] = (prev[i] as number) + ((next[i] as number) - (prev[i] as number)) * e;
        this.drawn = cur;
        this.draw();
        if (t < 1) this.anim = requestAnimationFrame(step);
        else {
          this.drawn = next;
          this.draw();
        }
      };
      this.anim = requestAnimationFrame(step);
    } else {
      this.drawn = next;
    }
    this.draw();
    if (this.query >= 0) void this.loadLines(this.query);
  }

  /** World → canvas transform with equal x/y scale (distances are the message) and a 4% margin. */
  private fit(layouts: Float32Array[]): void {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const xy of layouts) {
      for (let i = 0; i < xy.length; i += 2) {
        const x = xy[i] as number, y = xy[i + 1] as number;
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
    const span = Math.max(x1 - x0, y1 - y0, 1e-9);
    const k = (SINGLE * 0.92) / span;
    this.view = { x0: (x0 + x1) / 2 - SINGLE / 2 / k, y0: (y0 + y1) / 2 - SINGLE / 2 / k, k };
  }

  private toScreen(xy: Float32Array, i: number): [number, number] {
    const v = this.view;
    return [((xy[2 * i] as number) - v.x0) * v.k, SINGLE - ((xy[2 * i + 1] as number) - v.y0) * v.k];
  }

  private colorOf(i: number): string {
    const p = this.points;
    if (!p) return "#888";
    const isQ = i < p.numQueries;
    switch (this.colorBy) {
      case "kind":
        return isQ ? Q_COLOR : K_COLOR;
      case "position": {
        const len = p.len[i] as number;
        const t = len > 1 ? (p.pos[i] as number) / (len - 1) : 0;
        const b = Math.round(t * 7) / 7;
        return isQ ? `hsl(130,50%,${Math.round(80 - b * 55)}%)` : `hsl(325,65%,${Math.round(82 - b * 55)}%)`;
      }
      case "token":
        return `hsl(${Math.round(hashHue(p.token[i] ?? "") / 15) * 15},65%,45%)`;
      case "norm": {
        const norm = this.layout?.norm;
        if (!norm) return "#888";
        let lo = Infinity, hi = -Infinity;
        const from = isQ ? 0 : p.numQueries, to = isQ ? p.numQueries : norm.length;
        for (let j = from; j < to; j++) {
          const v = norm[j] as number;
          if (v < lo) lo = v;
          if (v > hi) hi = v;
        }
        const t = hi > lo ? ((norm[i] as number) - lo) / (hi - lo) : 0.5;
        return `hsl(${Math.round(260 - Math.round(t * 9) / 9 * 210)},70%,45%)`;
      }
      case "probe":
        return `hsl(${Math.round(((p.probe[i] as number) * 137.508) % 360)},60%,45%)`;
    }
  }

  private draw(): void {
    const xy = this.drawn;
    const p = this.points;
    const ctx = this.canvas.getContext("2d");
    if (!ctx || !p) return;
    const t0 = performance.now();
    ctx.clearRect(0, 0, SINGLE, SINGLE);
    if (!xy) return;
    const n = xy.length / 2;
    const buckets = new Map<string, number[]>();
    for (let o = 0; o < n; o++) {
      const i = interleave(o, p.numQueries, n);
      const c = this.colorOf(i);
      let b = buckets.get(c);
      if (!b) buckets.set(c, (b = []));
      b.push(i);
    }
    const dim = this.matches !== null;
    ctx.globalAlpha = dim ? 0.18 : 0.8;
    for (const [color, idx] of buckets) {
      ctx.fillStyle = color;
      ctx.strokeStyle = color;
      ctx.lineWidth = 1;
      for (const i of idx) {
        const [x, y] = this.toScreen(xy, i);
        if (i < p.numQueries || this.colorBy === "kind") ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
        else ctx.strokeRect(x - 1.5, y - 1.5, 3, 3); // keys hollow when colour does not say q/k
      }
    }
    ctx.globalAlpha = 1;
    if (this.matches) {
      ctx.strokeStyle = "#000";
      for (const i of this.matches) {
        const [x, y] = this.toScreen(xy, i);
        ctx.fillStyle = this.colorOf(i);
        ctx.fillRect(x - 3, y - 3, 6, 6);
        ctx.strokeRect(x - 3, y - 3, 6, 6);
      }
    }
    if (this.query >= 0 && this.lines.length) {
      const [qx, qy] = this.toScreen(xy, this.query);
      const wmax = Math.max(...this.lines.map((l) => l.w));
      for (const { key, w } of this.lines) {
        const [kx, ky] = this.toScreen(xy, key);
        ctx.strokeStyle = `rgba(40,40,40,${(0.25 + 0.75 * (w / wmax)).toFixed(3)})`;
        ctx.lineWidth = 0.5 + 4 * (w / wmax);
        ctx.beginPath();
        ctx.moveTo(qx, qy);
        ctx.lineTo(kx, ky);
        ctx.stroke();
        ctx.fillStyle = K_COLOR;
        ctx.fillRect(kx - 3, ky - 3, 6, 6);
      }
      ctx.fillStyle = Q_COLOR;
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 1.5;
      ctx.fillRect(qx - 4, qy - 4, 8, 8);
      ctx.strokeRect(qx - 4, qy - 4, 8, 8);
    }
    this.root.dataset["embDrawMs"] = (performance.now() - t0).toFixed(1);
  }

  private nearest(e: MouseEvent): number {
    const xy = this.drawn;
    if (!xy) return -1;
    const rect = this.canvas.getBoundingClientRect();
    const mx = ((e.clientX - rect.left) * SINGLE) / rect.width;
    const my = ((e.clientY - rect.top) * SINGLE) / rect.height;
    let best = -1, bestD = 64; // within 8 px
    const nq = this.points?.numQueries ?? 0;
    for (let i = 0; i < xy.length / 2; i++) {
      const [x, y] = this.toScreen(xy, i);
      // A key must be 3 px closer than a query to win: the faithful layout puts queries on their top keys.
      const d = (x - mx) ** 2 + (y - my) ** 2 + (i >= nq ? 9 : 0);
      if (d < bestD) {
        bestD = d;
        best = i;
      }
    }
    return best;
  }

  private screenOf(i: number): [number, number] | null {
    const xy = this.layout?.xy;
    if (!xy || this.mode !== "single" || i < 0 || 2 * i >= xy.length) return null;
    const [x, y] = this.toScreen(xy, i);
    const rect = this.canvas.getBoundingClientRect();
    return [rect.left + (x * rect.width) / SINGLE, rect.top + (y * rect.height) / SINGLE];
  }

  private describe(i: number): string {
    const p = this.points;
    const info = this.info;
    if (!p || !info) return "";
    const kind = i < p.numQueries ? "query" : "key";
    const norm = this.layout?.norm[i];
    return `${kind} ${JSON.stringify(p.token[i] ?? "")} · input ${p.probe[i]} position ${p.pos[i]}` +
      (norm !== undefined ? ` · |${kind === "query" ? "q" : "k"}| ${norm.toFixed(2)}` : "");
  }

  private showContext(i: number): void {
    const p = this.points;
    const info = this.info;
    if (!p || !info) return;
    const probe = p.probe[i] as number;
    const isQ = i < p.numQueries;
    const toks = isQ ? info.tokens[probe] ?? [] : info.key_tokens[probe] ?? info.tokens[probe] ?? [];
    const spans = toks.map((t, j) => {
      const s = el("span", j === p.pos[i] ? "emb-hit" : undefined, t);
      return s;
    });
    const head = el("div", undefined, `${info.probes[probe] ?? ""}:`);
    this.context.replaceChildren(head, ...spans.flatMap((s) => [s, document.createTextNode(" ")]));
  }

  private onMove(e: MouseEvent): void {
    const t0 = performance.now();
    const i = this.nearest(e);
    this.root.dataset["embPickMs"] = (performance.now() - t0).toFixed(2);
    if (i === this.hover) {
      if (i >= 0) this.placeTip(e);
      return;
    }
    this.hover = i;
    if (i < 0) {
      this.tip.style.display = "none";
      return;
    }
    this.tip.textContent = this.describe(i);
    this.tip.style.display = "block";
    this.placeTip(e);
    this.showContext(i);
  }

  private placeTip(e: MouseEvent): void {
    this.tip.style.left = `${e.clientX + 12}px`;
    this.tip.style.top = `${e.clientY + 12}px`;
  }

  private async onClick(e: MouseEvent): Promise<void> {
    const i = this.nearest(e);
    const p = this.points;
    if (!p || i < 0 || i >= p.numQueries) {
      this.query = -1;
      this.lines = [];
      this.keyList.replaceChildren();
      this.root.dataset["embLines"] = "0";
      this.draw();
      return;
    }
    this.query = i;
    this.showContext(i);
    await this.loadLines(i);
  }

  /** Lines from query i to the keys it attends to most (real attention of its own input, this layer/head). */
  private async loadLines(i: number): Promise<void> {
    const host = this.host, state = this.state, info = this.info, p = this.points;
    if (!host || !state || !info || !p) return;
    const probe = p.probe[i] as number;
    const ref: ProbeRef = { run: state.probe.run, tag: info.probes[probe] ?? "" };
    const { layer, head } = this.selected;
    const attn = await host.attention(state.step, layer, ref);
    if (this.query !== i || this.state !== state || this.selected.layer !== layer || this.selected.head !== head) return;
    const pos = p.pos[i] as number;
    const row = attn.weights.subarray((head * attn.Q + pos) * attn.K, (head * attn.Q + pos + 1) * attn.K);
    const order = Array.from(row.keys()).sort((a, b) => (row[b] as number) - (row[a] as number));
    const top = order.slice(0, 8).filter((j, n) => n === 0 || (row[j] as number) >= 0.02);
    const start = p.keyStart[probe] as number;
    this.lines = top.map((j) => ({ key: start + j, w: row[j] as number }));
    this.root.dataset["embLines"] = String(this.lines.length);
    const wmax = Math.max(...this.lines.map((l) => l.w), 1e-9);
    this.keyList.replaceChildren(
      el("div", undefined, `Query ${JSON.stringify(p.token[i] ?? "")} attends to (layer ${layer}, head ${head}):`),
      ...this.lines.map(({ key, w }) => {
        const row = el("div");
        const bar = el("span", "bar");
        bar.style.width = `${Math.round(60 * (w / wmax))}px`;
        row.append(bar, el("span", undefined, `${w.toFixed(3)} ${JSON.stringify(p.token[key] ?? "")} (position ${p.pos[key]})`));
        return row;
      }),
    );
    this.draw();
  }

  private updateSearch(): void {
    const q = this.search.value.trim().toLowerCase();
    const p = this.points;
    if (!q || !p) {
      this.matches = null;
      this.root.dataset["embMatches"] = "0";
      return;
    }
    const m = new Set<number>();
    p.token.forEach((t, i) => {
      if (t.toLowerCase().includes(q)) m.add(i);
    });
    this.matches = m;
    this.root.dataset["embMatches"] = String(m.size);
  }

  private updateLegend(): void {
    const text: Record<ColorBy, string> = {
      kind: "",
      position: "light → dark: first → last token (green queries, pink keys)",
      token: "one hue per token string; keys hollow",
      norm: "purple → yellow: small → large |q| or |k| (before normalisation); keys hollow",
      probe: "one hue per probe input; keys hollow",
    };
    const q = el("i");
    q.style.background = Q_COLOR;
    const k = el("i");
    k.style.background = K_COLOR;
    this.legend.replaceChildren(
      q, document.createTextNode("query"), k, document.createTextNode("key  "),
      document.createTextNode(text[this.colorBy]),
      el("br"),
      document.createTextNode("Hover: token and its input · click a query: lines to its top keys (attention) · Esc: all heads"),
    );
  }
}

/** Draw order: queries and keys alternate, so neither colour hides the other where they overlap. */
function interleave(n: number, nq: number, total: number): number {
  const nk = total - nq;
  const both = 2 * Math.min(nq, nk);
  if (n < both) return n % 2 === 0 ? n / 2 : nq + (n - 1) / 2;
  return nq > nk ? n - both + nk : nq + (n - both) + nq;
}

function buildPoints(info: BatchInfo): Points {
  const qTok: string[] = [], kTok: string[] = [];
  const qProbe: number[] = [], kProbe: number[] = [], qPos: number[] = [], kPos: number[] = [];
  const qLen: number[] = [], kLen: number[] = [];
  const keyStartRel: number[] = [];
  info.tokens.forEach((toks, p) => {
    toks.forEach((t, j) => {
      qTok.push(t);
      qProbe.push(p);
      qPos.push(j);
      qLen.push(toks.length);
    });
    const keys = info.key_tokens[p] ?? toks;
    keyStartRel.push(kTok.length);
    keys.forEach((t, j) => {
      kTok.push(t);
      kProbe.push(p);
      kPos.push(j);
      kLen.push(keys.length);
    });
  });
  const nq = qTok.length;
  return {
    probe: Int32Array.from([...qProbe, ...kProbe]),
    pos: Int32Array.from([...qPos, ...kPos]),
    token: [...qTok, ...kTok],
    len: Int32Array.from([...qLen, ...kLen]),
    numQueries: nq,
    keyStart: keyStartRel.map((s) => s + nq),
  };
}
