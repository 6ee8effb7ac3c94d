// Single-head mode: one head's joint embedding large. Hover for the token and its sentence, click a query to
// draw lines to the keys it attends to most (real attention of its own input, from the attention route), token
// search highlights matches. A new layout of the same points (another step or method) animates from the old one.

import { wholeLayerOk } from "../../data/scale";
import type { ProbeRef, SharedState, ViewHost } from "../../shell/view";
import type { BatchInfo, HeadLayout } from "./api";
import { el, fmt } from "./dom";
import { pointColor, type ColorBy, type Points } from "./points";
import { drawScatter, fit, nearestPoint, SINGLE, toScreen, type KeyLine, type Transform } from "./scatter";
import { SidePanel } from "./side";
import { layerHeadLabel } from "../../data/labels";

const ANIM_MS = 350;

/** What the single-head view shows, owned by the embedding view; read afresh on every use. */
export interface Batch {
  host: ViewHost | null;
  state: SharedState | null;
  info: BatchInfo | null;
  points: Points | null;
  selected: { layer: number; head: number };
}

export class SingleHead {
  readonly el = el("div", "emb-single");
  /** The hover tooltip (position: fixed); the view places it last in its root. */
  readonly tip = el("div", "emb-tip");
  private readonly canvas = el("canvas", "emb-canvas");
  private readonly side = new SidePanel();
  private layout: HeadLayout | null = null;
  private drawn: Float32Array | null = null; // positions on screen now (world coords), for animation
  private view: Transform = { x0: 0, y0: 0, k: 1 };
  private hover = -1;
  private query = -1;
  private lines: KeyLine[] = [];
  private matches: Set<number> | null = null;
  private anim = 0;
  private colorBy: ColorBy = "kind";

  /** `root` carries the test / benchmark data attributes (data-emb-*). */
  constructor(
    private readonly root: HTMLElement,
    private readonly batch: () => Batch,
  ) {
    this.canvas.width = SINGLE;
    this.canvas.height = SINGLE;
    this.el.append(this.canvas, this.side.el);
    this.el.style.display = "none";
    this.canvas.addEventListener("mousemove", (e) => this.onMove(e));
    this.canvas.addEventListener("mouseleave", () => {
      this.hover = -1;
      this.hideTip();
    });
    this.canvas.addEventListener("click", (e) => void this.onClick(e));
  }

  /** Forget the head shown (another batch, or entering single-head mode): the next layout does not animate. */
  reset(): void {
    this.query = -1;
    this.lines = [];
    this.drawn = null;
    this.layout = null;
    this.side.clear(); // never another batch's sentence, query or keys
    this.root.dataset["embLines"] = "0";
  }

  /** Whether a head is on screen now (a new step's layout would animate from it). */
  get showing(): boolean {
    return this.drawn !== null;
  }

  hideTip(): void {
    this.tip.style.display = "none";
  }

  setColorBy(c: ColorBy): void {
    this.colorBy = c;
    this.updateLegend();
    this.draw();
  }

  updateLegend(): void {
    this.side.setLegend(this.colorBy);
  }

  setLayout(layout: HeadLayout): void {
    const prev = this.drawn;
    this.layout = layout;
    const b = this.batch();
    this.side.setHead(layout, b.info, b.selected, b.state?.manifest ?? {});
    this.root.dataset["embMethod"] = layout.method;
    this.root.dataset["embFaithfulness"] = fmt(layout.faithfulness);
    const next = layout.xy;
    const to = fit([next]);
    cancelAnimationFrame(this.anim);
    if (prev && prev.length === next.length) {
      // Points and the zoom move together, from the old picture's fit to the new one's: the head ends filling
      // the canvas (a fit of both layouts would leave it in a corner once the old one is gone).
      const from = this.view;
      const start = performance.now();
      const cur = new Float32Array(next.length);
      const step = (now: number): void => {
        const t = Math.min(1, (now - start) / ANIM_MS);
        const e = t * t * (3 - 2 * t);
        for (let i = 0; i < cur.length; i++)
          cur[i] = (prev[i] as number) + ((next[i] as number) - (prev[i] as number)) * e;
        const k = from.k * Math.pow(to.k / from.k, e);
        this.view = { x0: from.x0 + (to.x0 - from.x0) * e, y0: from.y0 + (to.y0 - from.y0) * e, k };
        this.drawn = cur;
        this.draw();
        if (t < 1) this.anim = requestAnimationFrame(step);
        else {
          this.view = to;
          this.drawn = next;
          this.draw();
        }
      };
      this.anim = requestAnimationFrame(step);
    } else {
      this.view = to;
      this.drawn = next;
    }
    this.draw();
    if (this.query >= 0) void this.loadLines(this.query);
  }

  draw(): void {
    const xy = this.drawn;
    const p = this.batch().points;
    const ctx = this.canvas.getContext("2d");
    if (!ctx || !p) return;
    const t0 = performance.now();
    ctx.clearRect(0, 0, SINGLE, SINGLE);
    if (!xy) return;
    const norm = this.layout?.norm;
    drawScatter(ctx, {
      xy,
      points: p,
      view: this.view,
      colorBy: this.colorBy,
      colorOf: (i) => pointColor(p, this.colorBy, norm, i),
      matches: this.matches,
      query: this.query,
      lines: this.lines,
    });
    this.root.dataset["embDrawMs"] = (performance.now() - t0).toFixed(1);
  }

  /** Search: highlight points whose token contains `text` (case-insensitive); call draw() after. */
  updateSearch(text: string): void {
    const q = text.trim().toLowerCase();
    const p = this.batch().points;
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

  /** Client coordinates of point i in the canvas (test hook); null unless a head is shown in single-head mode. */
  screenOf(i: number, single: boolean): [number, number] | null {
    const xy = this.layout?.xy;
    if (!xy || !single || i < 0 || 2 * i >= xy.length) return null;
    const [x, y] = toScreen(this.view, xy, i);
    const rect = this.canvas.getBoundingClientRect();
    return [rect.left + (x * rect.width) / SINGLE, rect.top + (y * rect.height) / SINGLE];
  }

  private nearest(e: MouseEvent): number {
    const xy = this.drawn;
    if (!xy) return -1;
    const rect = this.canvas.getBoundingClientRect();
    const mx = ((e.clientX - rect.left) * SINGLE) / rect.width;
    const my = ((e.clientY - rect.top) * SINGLE) / rect.height;
    return nearestPoint(xy, this.view, mx, my, this.batch().points?.numQueries ?? 0);
  }

  private describe(i: number): string {
    const { points: p, info } = this.batch();
    if (!p || !info) return "";
    const kind = i < p.numQueries ? "query" : "key";
    const norm = this.layout?.norm[i];
    return (
      `${kind} ${JSON.stringify(p.token[i] ?? "")} · input ${p.probe[i]} position ${p.pos[i]}` +
      (norm !== undefined ? ` · |${kind === "query" ? "q" : "k"}| ${norm.toFixed(2)}` : "")
    );
  }

  private showContext(i: number): void {
    const { points: p, info } = this.batch();
    if (!p || !info) return;
    this.side.setContext(p, info, i);
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
      this.hideTip();
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
    const p = this.batch().points;
    if (!p || i < 0 || i >= p.numQueries) {
      this.query = -1;
      this.lines = [];
      this.side.clearKeys();
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
    const { host, state, info, points: p, selected } = this.batch();
    if (!host || !state || !info || !p) return;
    const probe = p.probe[i] as number;
    const ref: ProbeRef = { run: state.probe.run, tag: info.probes[probe] ?? "" };
    const { layer, head } = selected;
    // One head is enough for one query's lines (a long probe or a "qk" layer has no whole layers to send).
    const one = !wholeLayerOk(state.manifest, layer);
    const attn = one
      ? await host.attentionHead(state.step, layer, head, ref)
      : await host.attention(state.step, layer, ref);
    const now = this.batch();
    if (this.query !== i || now.state !== state || now.selected.layer !== layer || now.selected.head !== head) return;
    const pos = p.pos[i] as number;
    const slot = one ? 0 : head;
    const row = attn.weights.subarray((slot * attn.Q + pos) * attn.K, (slot * attn.Q + pos + 1) * attn.K);
    const order = Array.from(row.keys()).sort((a, b) => (row[b] as number) - (row[a] as number));
    const top = order.slice(0, 8).filter((j, n) => n === 0 || (row[j] as number) >= 0.02);
    const start = p.keyStart[probe] as number;
    this.lines = top.map((j) => ({ key: start + j, w: row[j] as number }));
    this.root.dataset["embLines"] = String(this.lines.length);
    this.side.setKeys(p, i, this.lines, layerHeadLabel(state.manifest, layer, head));
    this.draw();
  }
}
