// The head view at thousands of tokens: each query's top-k keys from the server (`topk` route) instead of every
// weight, token columns with only the rows near the screen in the DOM (virtualRows.ts), and only the lines that
// cross the canvas window stroked (window.ts). Hover a token: its lines (a query's k keys per head, or the queries
// whose top k holds a key) within one frame; click locks it. Search (controls/searchControl.ts) asks the view
// for matches through `tbaSearch` on its root, since most rows are not in the DOM.

import { HoverLock } from "../../controls/hoverLock";
import { delegateTokens, onPageScroll } from "./events";
import { CODE_WEIGHT } from "../../data/lod";
import { headColor } from "../palette";
import { rowHeightFor } from "../tokens";
import { BUCKET_ALPHA, BUCKETS, bucketOf, LINE_GAP, LINE_INSET, lineWidth, MIN_ALPHA, type Hover } from "./paths";
import { VirtualColumn } from "./virtualRows";
import { CanvasWindow } from "./window";

/** Top-k lines of some heads: keys and codes [H, Q, k] (slot h is head `heads[h]` of the layer). */
export interface SparseData {
  left: string[];
  right: string[];
  H: number;
  Q: number;
  k: number;
  keys: Int32Array;
  codes: Uint8Array;
}

/** `tbaSearch(text, scroll, next)` → number of matches: the search control's hook for virtual views. */
export type SearchHook = (text: string, scroll: boolean, next: boolean) => number;

/** At most this many lines for a hovered key (a sink key is in every query's top k). */
const HOVER_LINES = 4000;

export class SparseHeadView {
  readonly root = document.createElement("div");
  private readonly win = new CanvasWindow("head-canvas");
  private readonly leftCol = new VirtualColumn("left");
  private readonly rightCol = new VirtualColumn("right");
  private readonly lock = new HoverLock<Hover>(
    (cur, locked) => this.setHover(cur, locked),
    (a, b) => a.side === b.side && a.index === b.index,
  );
  private data: SparseData | null = null;
  private active: boolean[] = [];
  private hover: Hover | null = null;
  // For a hovered key: per slot, the queries whose top k holds each key (CSR), built on the first key hover.
  private byKey: { start: Int32Array; rows: Int32Array } | null = null;
  private rowH = 12;
  private leftW = 120;
  private rightW = 120;
  private width = 0;
  /** Width of the band the lines cross: what `fit` leaves beside the columns (the short view's rule), else LINE_GAP. */
  private gap = LINE_GAP;
  private fit: (() => number) | null = null;
  private height = 0;
  private searchHits: { side: "left" | "right"; index: number }[] = [];
  private searchAt = 0;
  /** Lines per query: at most the server's k (0: all k). */
  topK = 0;
  gain = 1;
  colorOf: (h: number) => string = headColor;
  onHoverDrawn: ((ms: number) => void) | null = null;
  onTokenChange: ((cur: Hover | null) => void) | null = null;

  constructor() {
    this.root.className = "head-view sparse";
    this.root.append(this.win.canvas, this.leftCol.el, this.rightCol.el);
    delegateTokens(this.root, this.lock);
    onPageScroll(
      () => !!this.data && this.root.isConnected,
      () => this.sync(false),
    );
    this.root.dataset["tbaSearch"] = "1";
    (this.root as HTMLElement & { tbaSearch?: SearchHook }).tbaSearch = (text, scroll, next) =>
      this.search(text, scroll, next);
  }

  setData(data: SparseData, active: boolean[]): void {
    const relayout = !this.data || this.data.left !== data.left || this.data.right !== data.right;
    this.data = data;
    this.active = active.slice();
    this.byKey = null;
    if (relayout) this.layout(data);
    const h = this.hover;
    if (h && h.index >= (h.side === "left" ? data.left.length : data.right.length)) this.lock.reset();
  }

  setActive(active: boolean[]): void {
    this.active = active.slice();
  }

  currentToken(): Hover | null {
    return this.hover;
  }

  lockedToken(): Hover | null {
    return this.lock.isLocked ? this.lock.current : null;
  }

  lockToken(t: Hover): void {
    const n = this.data ? (t.side === "left" ? this.data.left.length : this.data.right.length) : 0;
    const cur = this.lockedToken();
    if (t.index < n && !(cur && cur.side === t.side && cur.index === t.index)) this.lock.click(t);
  }

  unlock(): boolean {
    return this.lock.unlock();
  }

  /** Lets the line band take the width `avail()` leaves beside the token columns (160–900 px, as the short head
   * view), refitted when `el` is resized. */
  fitTo(el: HTMLElement, avail: () => number): void {
    this.fit = avail;
    new ResizeObserver(() => {
      if (!this.data || !el.clientWidth) return; // (not while hidden: a tab switched away from has no width)
      if (this.bandWidth() === this.gap) return; // a re-layout resets the virtual columns: only when it changes
      this.layout(this.data);
      this.sync(true);
    }).observe(el);
  }

  private bandWidth(): number {
    const avail = this.fit?.() ?? 0;
    return avail > 0 ? Math.round(Math.max(160, Math.min(900, avail - this.leftW - this.rightW))) : LINE_GAP;
  }

  /** Rows in the DOM (tests: the columns are virtual). */
  domRows(): number {
    return this.root.querySelectorAll(".token").length;
  }

  private layout(d: SparseData): void {
    const n = Math.max(d.left.length, d.right.length);
    this.rowH = rowHeightFor(n);
    this.gap = this.bandWidth();
    this.width = this.leftW + this.gap + this.rightW;
    this.height = n * this.rowH;
    this.win.setWidth(this.width);
    this.root.style.width = `${this.width}px`;
    this.root.style.height = `${this.height}px`;
    this.root.style.setProperty("--row-h", `${this.rowH}px`);
    this.root.style.setProperty("--font-px", "10px");
    this.leftCol.set(d.left, this.rowH, 0, this.leftW);
    this.rightCol.set(d.right, this.rowH, this.leftW + this.gap, this.rightW);
  }

  paint(): void {
    this.sync(true);
  }

  /** Builds the rows on screen and redraws the canvas window when it moved (or `force`). */
  private sync(force: boolean): void {
    if (!this.data) return;
    const r = this.root.getBoundingClientRect();
    const vh = window.innerHeight || 800;
    const top = Math.max(0, -r.top);
    const bottom = Math.min(this.height, vh - r.top);
    this.leftCol.update(top, bottom, force);
    this.rightCol.update(top, bottom, force);
    if (this.win.place(this.root, this.width, this.height, force) || force) this.draw();
  }

  private slots(): number[] {
    const out: number[] = [];
    for (let h = 0; h < (this.data?.H ?? 0); h++) if (this.active[h] !== false) out.push(h);
    return out;
  }

  private draw(): void {
    this.win.clear(this.width);
    if (this.hover) this.drawHover(this.hover);
    else this.drawBase();
  }

  /** Every line with an end inside the canvas window, bucketed by opacity, one stroke per bucket and head. */
  private drawBase(): void {
    const d = this.data as SparseData;
    const ctx = this.win.ctx;
    const slots = this.slots();
    const nA = slots.length / this.gain;
    const kk = this.topK > 0 ? Math.min(this.topK, d.k) : d.k;
    const { rowH } = this;
    const lo = Math.floor(this.win.top / rowH);
    const hi = Math.ceil((this.win.top + this.win.height) / rowH);
    const x0 = this.leftW + LINE_INSET;
    const x1 = this.leftW + this.gap - LINE_INSET;
    ctx.lineWidth = lineWidth(rowH);
    const paths: (Path2D | null)[] = new Array(BUCKETS);
    for (const h of slots) {
      paths.fill(null);
      for (let i = 0; i < d.Q; i++) {
        const rowIn = i >= lo && i < hi;
        const base = (h * d.Q + i) * d.k;
        for (let t = 0; t < kk; t++) {
          const j = d.keys[base + t] as number;
          if (!rowIn && (j < lo || j >= hi)) continue; // neither end in the window
          const w = CODE_WEIGHT[d.codes[base + t] as number] as number;
          if (w / nA < MIN_ALPHA) continue;
          const b = bucketOf(w / nA);
          const p = (paths[b] ??= new Path2D());
          p.moveTo(x0, (i + 0.5) * rowH);
          p.lineTo(x1, (j + 0.5) * rowH);
        }
      }
      ctx.strokeStyle = this.colorOf(h);
      paths.forEach((p, b) => {
        if (!p) return;
        ctx.globalAlpha = BUCKET_ALPHA[b] as number;
        ctx.stroke(p);
      });
    }
    ctx.globalAlpha = 1;
  }

  private keyIndex(): { start: Int32Array; rows: Int32Array } {
    if (this.byKey) return this.byKey;
    const d = this.data as SparseData;
    const K = d.right.length;
    // Per slot h and key j: entries (h·Q + i)·k + t whose key is j, in query order.
    const start = new Int32Array(d.H * K + 1);
    for (let e = 0; e < d.keys.length; e++) {
      const j = d.keys[e] as number;
      if (j >= 0 && j < K && d.codes[e]) start[Math.floor(e / (d.Q * d.k)) * K + j + 1]!++;
    }
    for (let x = 1; x < start.length; x++) start[x]! += start[x - 1] as number;
    const fill = start.slice(0, -1);
    const rows = new Int32Array(start[start.length - 1] as number);
    for (let e = 0; e < d.keys.length; e++) {
      const j = d.keys[e] as number;
      if (j >= 0 && j < K && d.codes[e]) rows[fill[Math.floor(e / (d.Q * d.k)) * K + j]!++] = e;
    }
    return (this.byKey = { start, rows });
  }

  /** The hovered token's lines per head, and weight boxes behind the tokens on the other side. */
  private drawHover(hv: Hover): void {
    const d = this.data as SparseData;
    const ctx = this.win.ctx;
    const slots = this.slots();
    const nA = Math.max(1, slots.length);
    const { rowH } = this;
    const x0 = this.leftW + LINE_INSET;
    const x1 = this.leftW + this.gap - LINE_INSET;
    const boxX = hv.side === "left" ? this.leftW + this.gap : 0;
    const boxW = (hv.side === "left" ? this.rightW : this.leftW) / nA;
    const yh = (hv.index + 0.5) * rowH;
    ctx.lineWidth = lineWidth(rowH);
    const K = d.right.length;
    const index = hv.side === "right" ? this.keyIndex() : null;
    const perHead = Math.max(1, Math.floor(HOVER_LINES / nA));
    slots.forEach((h, slot) => {
      ctx.fillStyle = ctx.strokeStyle = this.colorOf(h);
      const entries: number[] = [];
      if (index) {
        const a = index.start[h * K + hv.index] as number;
        const b = Math.min(index.start[h * K + hv.index + 1] as number, a + perHead);
        for (let x = a; x < b; x++) entries.push(index.rows[x] as number);
      } else {
        const base = (h * d.Q + hv.index) * d.k;
        for (let t = 0; t < d.k; t++) entries.push(base + t);
      }
      for (const e of entries) {
        const w = CODE_WEIGHT[d.codes[e] as number] as number;
        if (w < MIN_ALPHA) continue;
        const other = index ? Math.floor(e / d.k) % d.Q : (d.keys[e] as number);
        const yo = (other + 0.5) * rowH;
        ctx.globalAlpha = Math.min(1, w);
        ctx.fillRect(boxX + slot * boxW, other * rowH, boxW, rowH);
        ctx.globalAlpha = Math.min(1, Math.max(MIN_ALPHA, (w * this.gain) / nA));
        ctx.beginPath();
        ctx.moveTo(x0, index ? yo : yh);
        ctx.lineTo(x1, index ? yh : yo);
        ctx.stroke();
      }
    });
    ctx.globalAlpha = 1;
  }

  private setHover(cur: Hover | null, locked: boolean): void {
    const t0 = performance.now();
    for (const col of [this.leftCol, this.rightCol]) {
      const was = col.marked;
      col.marked = cur && cur.side === col.side ? { index: cur.index, locked } : null;
      if (was) col.remark();
      if (col.marked) col.remark();
    }
    this.hover = cur;
    this.root.dataset["locked"] = locked && cur ? `${cur.side}:${cur.index}` : "";
    if (this.data) this.draw();
    this.onHoverDrawn?.(performance.now() - t0);
    this.onTokenChange?.(cur);
  }

  private search(text: string, scroll: boolean, next: boolean): number {
    const q = text.trim().toLowerCase();
    this.leftCol.search = this.rightCol.search = q;
    this.leftCol.remark();
    this.rightCol.remark();
    const hits = [
      ...this.leftCol.matches(q).map((index) => ({ side: "left" as const, index })),
      ...this.rightCol.matches(q).map((index) => ({ side: "right" as const, index })),
    ];
    this.searchHits = hits;
    if (scroll && hits.length) {
      this.searchAt = next ? (this.searchAt + 1) % hits.length : 0;
      const hit = hits[this.searchAt] as { side: "left" | "right"; index: number };
      const el = (hit.side === "left" ? this.leftCol : this.rightCol).ensure(hit.index);
      el?.scrollIntoView({ block: "center" });
      this.root.dataset["searchAt"] = `${hit.side}:${hit.index}`;
      this.sync(false);
    }
    return this.searchHits.length;
  }
}
