// Model view: every layer × head as a thumbnail line diagram (rows = layers, columns = heads, colour = layer,
// as BertViz). Click a thumbnail to enlarge it beside the grid with token labels and hover; the selection
// survives step changes. Layers load concurrently and each row paints as soon as its layer arrives.

import { checkShape } from "../../data/api";
import { LESS, MORE, compareTarget, deltaSummary, splitDelta } from "../../data/compare";
import { HeadView } from "../../draw/headView";
import { lineThumbColor } from "../../draw/palette";
import { ColorBar } from "../../draw/legend";
import { tokenColor } from "../../shell/theme";
import { headIndex, headLabel, layerIndex, layerLabel, sharedHeads, subsetNote } from "../../data/labels";
import type { Manifest } from "../../data/api";
import { storedHead, storedLayer } from "../../shell/deepLink";
import { drawLineThumb } from "../../draw/lineThumb";
import { autoTopK } from "../../draw/topk";
import type { CompareRef, SharedState, View, ViewHost } from "../../shell/view";
import { usesThumbnails } from "../../data/scale";
import { ThumbGrid } from "./thumbs";

export class ModelView implements View {
  readonly id = "model";
  readonly label = "Model view";
  readonly usesLayer = false;
  readonly root = document.createElement("div");
  private readonly grid = document.createElement("div");
  private readonly detailPanel = document.createElement("div");
  private readonly detailTitle = document.createElement("div");
  private readonly detail = new HeadView("model-detail-canvas");
  private thumbs: HTMLCanvasElement[][] = [];
  private shape = "";
  private selected: { layer: number; head: number } | null = null;
  private host: ViewHost | null = null;
  private state: SharedState | null = null;
  private ref: CompareRef | null = null;
  private pendingSel: string | null = null;
  private readonly legend = new ColorBar("model-legend");
  // LLM scale: server thumbnails instead of line diagrams (thumbs.ts), built on first use.
  private thumbGrid: ThumbGrid | null = null;

  constructor() {
    this.root.className = "model-view";
    this.grid.className = "mv-grid";
    this.detailPanel.className = "mv-detail";
    this.detailPanel.style.display = "none";
    const bar = document.createElement("div");
    bar.className = "mv-detail-bar";
    this.detailTitle.className = "mv-detail-title";
    const open = document.createElement("button");
    open.type = "button";
    open.textContent = "Open in head view";
    open.className = "mv-open-head";
    open.addEventListener("click", () => {
      if (this.selected && this.host) this.host.select({ view: "head", layer: this.selected.layer });
    });
    const close = document.createElement("button");
    close.type = "button";
    close.textContent = "×";
    close.title = "Close (Esc)";
    close.className = "mv-close";
    close.addEventListener("click", () => this.select(null));
    bar.append(this.detailTitle, open, close);
    this.detailPanel.append(bar, this.detail.root);
    this.root.append(this.grid, this.legend.el, this.detailPanel);
    this.grid.addEventListener("click", (e) => {
      const el = (e.target as Element).closest<HTMLElement>(".mv-thumb");
      if (!el) return;
      const sel = { layer: Number(el.dataset["layer"]), head: Number(el.dataset["head"]) };
      const same = this.selected && this.selected.layer === sel.layer && this.selected.head === sel.head;
      this.select(same ? null : sel); // clicking the open thumbnail closes it (BertViz)
    });
  }

  private layout(m: Manifest, n: number): void {
    const L = m.num_layers;
    const H = m.num_heads;
    const shared = sharedHeads(m);
    const key = JSON.stringify([L, H, n > 64, m.layers?.map((x) => [x.index, x.heads]) ?? null]);
    if (key === this.shape) return;
    this.shape = key;
    // Thumbnails share the width left of the ~480 px detail panel; never smaller than 44 px (labels stay legible).
    const avail = Math.max(480, (window.innerWidth || 1280) - 32 - 80 - 500);
    const tw = Math.max(44, Math.min(96, Math.floor(avail / H) - 6));
    const th = Math.round(tw * (n > 64 ? 1.5 : 1.25));
    this.grid.style.setProperty("--thumb-w", `${tw}px`);
    this.grid.style.setProperty("--thumb-h", `${th}px`);
    this.grid.style.gridTemplateColumns = `auto repeat(${H}, ${tw}px)`;
    const cells: HTMLElement[] = [document.createElement("div")];
    // Column headers name the model's heads when every layer logged the same ones; else each thumbnail says.
    for (let h = 0; h < H; h++) cells.push(label("mv-col-label", shared ? `Head ${shared[h]}` : `#${h}`));
    this.thumbs = [];
    const dpr = window.devicePixelRatio || 1;
    for (let l = 0; l < L; l++) {
      cells.push(label("mv-row-label", layerLabel(m, l, true)));
      const row: HTMLCanvasElement[] = [];
      for (let h = 0; h < H; h++) {
        const cell = document.createElement("div");
        cell.className = "mv-thumb";
        cell.dataset["layer"] = String(l);
        cell.dataset["head"] = String(h);
        cell.title = `${layerLabel(m, l, true)}, ${headLabel(m, l, h)}: click to enlarge`;
        cell.dataset["label"] = `${layerIndex(m, l)}:${headIndex(m, l, h)}`;

        const c = document.createElement("canvas");
        c.width = Math.round(tw * dpr);
        c.height = Math.round(th * dpr);
        cell.appendChild(c);
        row.push(c);
        cells.push(cell);
      }
      this.thumbs.push(row);
    }
    this.grid.replaceChildren(...cells);
    this.syncSelected();
  }

  async show(host: ViewHost): Promise<void> {
    this.host = host;
    const state = host.state;
    const m = state.manifest;
    if (this.setThumbs(usesThumbnails(m))) {
      const summary = await (this.thumbGrid as ThumbGrid).show(host, state);
      if (summary !== null && host.isCurrent(state)) host.setSummary(summary);
      return;
    }
    const Q = m.tokens.length;
    const K = (m.key_tokens ?? m.tokens).length;
    this.layout(m, Math.max(Q, K));
    const [linkLayer, linkHead] = (this.pendingSel ?? "").split(":");
    this.pendingSel = null;
    const sl = storedLayer(m, linkLayer);
    const sh = sl === null ? null : storedHead(m, sl, linkHead);
    if (sl !== null && sh !== null) {
      this.selected = { layer: sl, head: sh };
      this.syncSelected();
    }
    const topK = autoTopK(K);
    const target = await compareTarget(host, state);
    if (!host.isCurrent(state)) return;
    const ref = target && typeof target !== "string" ? target.ref : null;
    const paintLayer = async (l: number): Promise<void> => {
      const [attn, refAttn] = await Promise.all([
        host.attention(state.step, l),
        ref ? host.attention(ref.step, l, ref.probe) : null,
      ]);
      if (!host.isCurrent(state)) return;
      checkShape(attn, Q, K);
      if (!refAttn) {
        this.paintRow(l, [[attn.weights, lineThumbColor]], attn.H, Q, K, topK);
        return;
      }
      // Comparing: |Δ| lines, orange where this step attends more, purple where less.
      const d = splitDelta(attn, refAttn);
      const n = attn.H * Q * K;
      this.paintRow(
        l,
        [
          [d.weights.subarray(0, n), () => MORE],
          [d.weights.subarray(n), () => LESS],
        ],
        attn.H,
        Q,
        K,
        topK,
      );
    };
    // Layers load concurrently; but when one decoded layer is big (long sequences: 12 heads × 2,048² is 200 MB),
    // one at a time, so the page never holds every layer at once (the cache keeps what fits).
    if (m.num_heads * Q * K * 4 <= 64 << 20) {
      await Promise.all(Array.from({ length: m.num_layers }, (_, l) => paintLayer(l)));
    } else {
      for (let l = 0; l < m.num_layers && host.isCurrent(state); l++) await paintLayer(l);
    }
    if (!host.isCurrent(state)) return;
    this.state = state;
    this.ref = ref;
    this.legend.set(
      {
        map: ref ? MORE : tokenColor("--tba-fg"),
        lo: 0,
        hi: 1,
        title: ref
          ? "line opacity: mean |Δ weight| (orange: more attention now, purple: less)"
          : "line opacity: mean attention weight of the rows a line bins (colour = head)",
      },
      120,
    );
    host.setSummary(
      (ref ? deltaSummary(state, ref) + " · " : typeof target === "string" ? `(${target}) · ` : "") +
        `${m.num_layers} layers × ${m.num_heads} heads` +
        (subsetNote(m) ? ` (${subsetNote(m)})` : "") +
        ` · ${Q} tokens` +
        (topK ? ` · top ${topK} keys per query (long sequence)` : "") +
        " · click a thumbnail to enlarge it",
    );
    await this.showDetail();
  }

  /** Shows the thumbnail grid (true) or the line diagrams. */
  private setThumbs(on: boolean): boolean {
    if (on && !this.thumbGrid) {
      this.thumbGrid = new ThumbGrid();
      this.root.append(this.thumbGrid.root);
    }
    for (const el of [this.grid, this.legend.el]) el.style.display = on ? "none" : "";
    if (on) this.detailPanel.style.display = "none";
    if (this.thumbGrid) this.thumbGrid.root.style.display = on ? "" : "none";
    return on;
  }

  /** Each of `layers` is weights [H, Q, K] and the colour of head h's lines (the head's, or Δ's more/less). */
  private paintRow(
    l: number,
    layers: [Float32Array, (h: number) => string][],
    H: number,
    Q: number,
    K: number,
    topK: number,
  ): void {
    const row = this.thumbs[l] ?? [];
    const dpr = window.devicePixelRatio || 1;
    for (let h = 0; h < H && h < row.length; h++) {
      const c = row[h] as HTMLCanvasElement;
      const ctx = c.getContext("2d");
      if (!ctx) continue;
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, c.width, c.height);
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      for (const [weights, color] of layers)
        drawLineThumb(ctx, weights, h, Q, K, c.width / dpr, c.height / dpr, color(h), topK);
    }
  }

  private select(sel: { layer: number; head: number } | null): void {
    this.selected = sel;
    this.host?.updateLink();
    this.syncSelected();
    void this.showDetail();
  }

  private syncSelected(): void {
    this.grid.querySelectorAll<HTMLElement>(".mv-thumb").forEach((el) => {
      const on =
        !!this.selected &&
        Number(el.dataset["layer"]) === this.selected.layer &&
        Number(el.dataset["head"]) === this.selected.head;
      el.classList.toggle("selected", on);
    });
  }

  private async showDetail(): Promise<void> {
    const sel = this.selected;
    const state = this.state;
    const host = this.host;
    if (!sel || !state || !host || sel.layer >= state.manifest.num_layers || sel.head >= state.manifest.num_heads) {
      this.detailPanel.style.display = "none";
      return;
    }
    const ref = this.ref;
    const [cur, refAttn] = await Promise.all([
      host.attention(state.step, sel.layer),
      ref ? host.attention(ref.step, sel.layer, ref.probe) : null,
    ]);
    if (this.selected !== sel || this.state !== state) return;
    const m = state.manifest;
    const attn = refAttn ? splitDelta(cur, refAttn) : cur;
    this.detailPanel.style.display = "";
    this.detailTitle.textContent =
      `${layerLabel(m, sel.layer, true)}, ${headLabel(m, sel.layer, sel.head, true)}` +
      (ref ? ` · Δ vs ${ref.label}` : "");
    this.detail.colorOf = refAttn ? (h) => (h < cur.H ? MORE : LESS) : lineThumbColor;
    this.detail.topK = autoTopK(attn.K);
    this.detail.setData(
      { left: m.tokens, right: m.key_tokens ?? m.tokens, attn },
      Array.from({ length: attn.H }, (_, h) => h === sel.head || h === sel.head + cur.H * (refAttn ? 1 : 0)),
    );
    this.detail.paint();
  }

  linkParams(): Record<string, string> {
    const s = this.selected;
    const m = this.state?.manifest;
    return { sel: s && m ? `${layerIndex(m, s.layer)}:${headIndex(m, s.layer, s.head)}` : "" };
  }

  /** `sel=L:H` (the model's numbers) opens that thumbnail enlarged. */
  restoreLink(params: Record<string, string>): void {
    this.pendingSel = params["sel"] ?? null;
  }

  onKey(e: KeyboardEvent): boolean {
    if (e.key === "Escape" && this.detail.unlock()) return true; // first Esc releases a locked token
    if (e.key === "Escape" && this.selected) {
      this.select(null);
      return true;
    }
    return false;
  }
}

function label(cls: string, text: string): HTMLDivElement {
  const d = document.createElement("div");
  d.className = cls;
  d.textContent = text;
  return d;
}
