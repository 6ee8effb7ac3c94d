// BertViz-style head view on a <canvas>: queries ("from") on the left, keys ("to") on the right, one line per
// (head, query, key) with colour = head colour and opacity = weight / number of active heads.
//
// BertViz draws H·Q·K SVG <line>s and stalls beyond ~128 tokens. Here lines whose opacity would round to zero
// are skipped and the rest are grouped into a few opacity buckets per head, each stroked as one Path2D, so a
// 12 × 512 × 512 layer is one pass over the weights plus ≤ 16 strokes per head.
//
// Rasterising long lines dominates (software canvas: ~25 µs per line spanning a 512-token view), and its cost
// grows with the canvas height. So the canvas only covers a window around the visible rows (the token columns
// are ordinary DOM and scroll natively); the per-head paths are kept and re-stroked when the page scrolls out
// of the window. Views shorter than a few screens use one canvas for everything.

import type { Attention } from "./api";
import { headColor } from "./palette";
import { HoverLock } from "./hoverLock";
import { kthLargest } from "./topk";

export interface HeadViewData {
  /** Query tokens (left column). */
  left: string[];
  /** Key tokens (right column): the query tokens for self-attention, `key_tokens` for cross-attention. */
  right: string[];
  attn: Attention;
}

type Side = "left" | "right";

const LINE_GAP = 300; // width of the band the lines cross, px
const LINE_INSET = 4; // lines stop short of the token columns
const MIN_ALPHA = 1 / 255; // below this a line cannot change a pixel
// Opacity buckets: two per octave from 1/255 to 1, so a line is drawn within ±19 % of its exact opacity.
const BUCKETS = 16;
const BUCKET_ALPHA = Float32Array.from({ length: BUCKETS }, (_, b) => Math.min(1, 2 ** ((b + 0.5) / 2) / 255));

function bucketOf(alpha: number): number {
  return Math.min(BUCKETS - 1, Math.max(0, Math.floor(Math.log2(alpha * 255) * 2)));
}

/** Row height shrinks from 20 px (≤ 32 tokens) to 12 px (≥ 160) so long sequences stay scannable. */
export function rowHeightFor(n: number): number {
  if (n <= 32) return 20;
  if (n >= 160) return 12;
  return Math.round(20 - ((n - 32) / 128) * 8);
}

/** Control characters would break a one-line row; show them escaped (the raw string stays in the title). */
export function displayText(token: string): string {
  // eslint-disable-next-line no-control-regex
  return token.replace(/[\u0000-\u001f\u007f]/g, (c) =>
    c === "\n" ? "\\n" : c === "\t" ? "\\t" : c === "\r" ? "\\r" : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
}

export class HeadView {
  readonly root: HTMLDivElement;
  /** Called after every hover change with the time the redraw took (ms), for benchmarks. */
  onHoverDrawn: ((ms: number) => void) | null = null;

  private readonly canvas: HTMLCanvasElement;
  private readonly ctx: CanvasRenderingContext2D;
  // Copy of the full (un-hovered) picture: leaving a token restores it with one drawImage instead of a repaint.
  private readonly base: HTMLCanvasElement;
  private readonly leftCol: HTMLDivElement;
  private readonly rightCol: HTMLDivElement;

  private readonly lock = new HoverLock<{ side: Side; index: number }>(
    (cur, locked) => {
      this.setHover(cur ? cur.side : null, cur ? cur.index : 0);
      this.hoveredEl?.classList.toggle("locked", locked);
      this.root.dataset["locked"] = locked && cur ? `${cur.side}:${cur.index}` : "";
      this.onTokenChange?.(cur);
    },
    (a, b) => a.side === b.side && a.index === b.index,
  );
  private data: HeadViewData | null = null;
  private active: boolean[] = [];
  private hover: { side: Side; index: number } | null = null;
  private hoveredEl: HTMLElement | null = null;
  private baseValid = false;
  // Built once per data / head selection; re-stroked for every window position.
  private linePaths: { color: string; alpha: number; path: Path2D }[] = [];
  private winTop = 0;
  private winH = 0;
  private dpr = 1;
  private scrollScheduled = false;

  // Layout of the current token columns.
  private layoutKey = "";
  private rowH = 20;
  private leftW = 0;
  private rightW = 0;
  private width = 0;
  private height = 0;

  /** Lines per query in the full view: 0 = all, else only each query's k strongest keys (long sequences). */
  topK = 0;
  /** Line opacity = weight ÷ active heads × gain (1 = BertViz). */
  gain = 1;
  /** Colour of head h's lines (the model view's enlarged thumbnail uses its layer colour). */
  colorOf: (h: number) => string = headColor;

  constructor(canvasId = "head-canvas") {
    this.root = document.createElement("div");
    this.root.className = "head-view";
    this.canvas = document.createElement("canvas");
    this.canvas.id = canvasId;
    // The SVG export asks the canvas for vector shapes instead of its bitmap (export.ts).
    (this.canvas as VectorCanvas).tbaVector = () => this.vector();
    this.root.appendChild(this.canvas);
    const ctx = this.canvas.getContext("2d");
    if (!ctx) throw new Error("this browser has no 2D canvas");
    this.ctx = ctx;
    this.base = document.createElement("canvas");
    this.leftCol = this.column("left");
    this.rightCol = this.column("right");

    // Delegated hover: one listener pair instead of two per token. Click locks the token (Esc unlocks).
    const tokenOf = (e: Event): { side: Side; index: number } | null => {
      const el = (e.target as Element).closest<HTMLElement>(".token");
      return el ? { side: el.classList.contains("left") ? "left" : "right", index: Number(el.dataset["index"]) } : null;
    };
    this.root.addEventListener("mouseover", (e) => {
      const t = tokenOf(e);
      if (t) this.lock.hover(t);
    });
    this.root.addEventListener("mouseout", (e) => {
      const to = (e.relatedTarget as Element | null)?.closest?.(".token");
      if (!to || !this.root.contains(to)) this.lock.hover(null);
    });
    this.root.addEventListener("click", (e) => {
      const t = tokenOf(e);
      if (t) this.lock.click(t);
    });
    const onScroll = (): void => {
      if (this.scrollScheduled) return;
      this.scrollScheduled = true;
      requestAnimationFrame(() => {
        this.scrollScheduled = false;
        if (this.data && this.placeWindow(false)) this.drawWindow();
      });
    };
    window.addEventListener("scroll", onScroll, { passive: true });
    window.addEventListener("resize", onScroll, { passive: true });
  }

  private column(side: Side): HTMLDivElement {
    const col = document.createElement("div");
    col.className = `token-col ${side}`;
    this.root.appendChild(col);
    return col;
  }

  /** Sets the data; token columns are rebuilt only when the tokens changed (usually not between steps). */
  setData(data: HeadViewData, active: boolean[]): void {
    this.data = data;
    this.active = active.slice();
    const key = JSON.stringify([data.left, data.right]);
    if (key !== this.layoutKey) {
      this.layoutKey = key;
      this.layout(data.left, data.right);
    }
    if (this.hover && this.hover.index >= (this.hover.side === "left" ? data.left.length : data.right.length)) {
      this.lock.reset();
      this.root.dataset["locked"] = "";
      this.setHover(null, 0, false);
    }
  }

  /** Heads in the current data (2·H while drawing a comparison). */
  headCount(): number {
    return this.data ? this.data.attn.H : 0;
  }

  /** Called when the hovered/locked token changes (the ViT image overlay follows it). */
  onTokenChange: ((cur: { side: Side; index: number } | null) => void) | null = null;

  /** The hovered or locked token, if any. */
  currentToken(): { side: Side; index: number } | null {
    return this.hover;
  }

  /** Hover (click = false) or click a query token from outside the columns (the image overlay's patches). */
  pickQuery(index: number | null, click: boolean): void {
    const t = index === null ? null : { side: "left" as Side, index };
    if (click && t) this.lock.click(t);
    else this.lock.hover(t);
  }

  /** Esc: releases a locked token; false when none was locked. */
  unlock(): boolean {
    return this.lock.unlock();
  }

  setActive(active: boolean[]): void {
    this.active = active.slice();
  }

  private layout(left: string[], right: string[]): void {
    const n = Math.max(left.length, right.length);
    this.rowH = rowHeightFor(n);
    const fontPx = this.rowH >= 18 ? 13 : this.rowH >= 15 ? 12 : 10;
    const font = `${fontPx}px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif`;
    this.ctx.font = font;
    const colWidth = (tokens: string[]): number => {
      let w = 0;
      for (const t of tokens) w = Math.max(w, this.ctx.measureText(displayText(t)).width);
      // At least 90 px: hover boxes split the column into one slice per head and must stay visible.
      return Math.ceil(Math.min(200, Math.max(76, w))) + 14;
    };
    this.leftW = colWidth(left);
    this.rightW = colWidth(right);
    this.width = this.leftW + LINE_GAP + this.rightW;
    this.height = n * this.rowH;

    this.canvas.style.width = `${this.width}px`;
    this.winH = -1; // force a resize at the next placeWindow
    this.root.style.width = `${this.width}px`;
    this.root.style.height = `${this.height}px`;
    this.root.style.setProperty("--row-h", `${this.rowH}px`);
    this.root.style.setProperty("--font-px", `${fontPx}px`);

    this.fillColumn(this.leftCol, left, 0, this.leftW, "left");
    this.fillColumn(this.rightCol, right, this.leftW + LINE_GAP, this.rightW, "right");
    this.hoveredEl = null;
    this.baseValid = false;
  }

  private fillColumn(col: HTMLDivElement, tokens: string[], x: number, w: number, side: Side): void {
    col.style.left = `${x}px`;
    col.style.width = `${w}px`;
    const frag = document.createDocumentFragment();
    tokens.forEach((t, i) => {
      const el = document.createElement("div");
      el.className = `token ${side}`;
      el.dataset["index"] = String(i);
      el.style.top = `${i * this.rowH}px`;
      // Tokens are untrusted text: textContent and title only, never HTML.
      el.textContent = displayText(t);
      el.title = `${side === "left" ? "query" : "key"} ${i}: ${t}`;
      frag.appendChild(el);
    });
    col.replaceChildren(frag);
  }

  private activeHeads(): number[] {
    const heads: number[] = [];
    const H = this.data ? this.data.attn.H : 0;
    for (let h = 0; h < H; h++) if (this.active[h] !== false) heads.push(h);
    return heads;
  }

  /** Full repaint (all lines of all active heads), then re-applies the hover if any. */
  paint(): void {
    this.buildPaths();
    this.placeWindow(true);
    this.drawWindow();
  }

  /** Rows [top, bottom) of the view that are on screen (empty when scrolled away or hidden). */
  private visibleRows(): [number, number] {
    const r = this.root.getBoundingClientRect();
    const vh = window.innerHeight || 800;
    const top = Math.min(this.height, Math.max(0, -r.top));
    return [top, Math.max(top, Math.min(this.height, vh - r.top))];
  }

  /** Moves the canvas over the visible rows plus half a screen each side; false if it already covers them. */
  private placeWindow(force: boolean): boolean {
    const [top, bottom] = this.visibleRows();
    if (!force && top >= this.winTop && bottom <= this.winTop + this.winH) return false;
    const vh = window.innerHeight || 800;
    let winTop = 0;
    let winH = this.height;
    if (this.height > Math.max(2400, 3 * vh)) {
      winTop = Math.max(0, Math.floor(top - vh / 2));
      winH = Math.min(this.height, Math.ceil(Math.max(bottom, top + vh) + vh / 2)) - winTop;
    }
    // Stay under Chromium's 32767 px canvas side at high DPR.
    const dpr = Math.max(1, Math.min(window.devicePixelRatio || 1, 32767 / Math.max(1, winH)));
    if (winH !== this.winH || dpr !== this.dpr) {
      this.canvas.width = Math.round(this.width * dpr);
      this.canvas.height = Math.round(winH * dpr);
      this.canvas.style.height = `${winH}px`;
    }
    this.winTop = winTop;
    this.winH = winH;
    this.dpr = dpr;
    this.canvas.style.top = `${winTop}px`;
    // Draw in view coordinates; the canvas bounds clip everything outside the window for free.
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, -winTop * dpr);
    this.baseValid = false;
    return true;
  }

  private drawWindow(): void {
    this.drawBase();
    if (this.hover) {
      this.snapshot();
      this.drawHover();
    }
  }

  /**
   * Copies the full (un-hovered) picture so leaving a token restores it with one drawImage. Taken lazily, when a
   * hover starts, not after every paint: the copy would otherwise add ~30 % to each paint and step change.
   */
  private snapshot(): void {
    const b = this.base;
    if (b.width !== this.canvas.width || b.height !== this.canvas.height) {
      b.width = this.canvas.width;
      b.height = this.canvas.height;
    }
    const bctx = b.getContext("2d");
    if (!bctx) return;
    bctx.clearRect(0, 0, b.width, b.height);
    bctx.drawImage(this.canvas, 0, 0);
    this.baseValid = true;
  }

  private drawBase(): void {
    const ctx = this.ctx;
    ctx.clearRect(0, this.winTop, this.width, this.winH);
    ctx.lineWidth = this.rowH >= 16 ? 2 : 1;
    for (const { color, alpha, path } of this.linePaths) {
      ctx.strokeStyle = color;
      ctx.globalAlpha = alpha;
      ctx.stroke(path);
    }
    ctx.globalAlpha = 1;
    this.baseValid = false;
  }

  private buildPaths(): void {
    this.linePaths = [];
    if (!this.data) return;
    const { Q, K, weights } = this.data.attn;
    const heads = this.activeHeads();
    const nA = heads.length / this.gain; // opacity = weight ÷ active heads (BertViz) × gain
    const minW = MIN_ALPHA * nA; // w / nA < 1/255 is invisible
    const x0 = this.leftW + LINE_INSET;
    const x1 = this.leftW + LINE_GAP - LINE_INSET;
    const rowH = this.rowH;
    const paths: (Path2D | null)[] = new Array(BUCKETS);
    for (const h of heads) {
      paths.fill(null);
      for (let i = 0; i < Q; i++) {
        const yi = (i + 0.5) * rowH;
        const base = (h * Q + i) * K;
        const rowMin = Math.max(minW, kthLargest(weights, base, K, this.topK));
        for (let j = 0; j < K; j++) {
          const w = weights[base + j];
          if (w < rowMin) continue;
          const b = bucketOf(w / nA);
          let p = paths[b];
          if (!p) p = paths[b] = new Path2D();
          p.moveTo(x0, yi);
          p.lineTo(x1, (j + 0.5) * rowH);
        }
      }
      paths.forEach((path, b) => path && this.linePaths.push({ color: this.colorOf(h), alpha: BUCKET_ALPHA[b], path }));
    }
  }

  private strokeBuckets(paths: (Path2D | null)[], color: string): void {
    const ctx = this.ctx;
    ctx.strokeStyle = color;
    for (let b = 0; b < BUCKETS; b++) {
      const p = paths[b];
      if (!p) continue;
      ctx.globalAlpha = BUCKET_ALPHA[b];
      ctx.stroke(p);
    }
  }

  private setHover(side: Side | null, index: number, redraw = true): void {
    if (this.hoveredEl) this.hoveredEl.classList.remove("hovered", "locked");
    this.hoveredEl = null;
    const wasFull = this.hover === null;
    this.hover = side ? { side, index } : null;
    if (!redraw) return;
    const t0 = performance.now();
    if (this.hover) {
      if (wasFull && !this.baseValid) this.snapshot(); // the canvas still shows the full picture

      this.drawHover();
    } else if (this.baseValid) {
      this.ctx.save();
      this.ctx.setTransform(1, 0, 0, 1, 0, 0);
      this.ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
      this.ctx.drawImage(this.base, 0, 0);
      this.ctx.restore();
    } else {
      this.drawBase();
    }
    this.onHoverDrawn?.(performance.now() - t0);
  }

  /** Lines of the hovered token only, plus per-head weight boxes behind the tokens on the other side. */
  private drawHover(): void {
    const hv = this.hover;
    if (!hv || !this.data) return;
    const { Q, K, weights } = this.data.attn;
    const col = hv.side === "left" ? this.leftCol : this.rightCol;
    this.hoveredEl = col.querySelector<HTMLElement>(`.token[data-index="${hv.index}"]`);
    this.hoveredEl?.classList.add("hovered");
    if (this.lock.isLocked) this.hoveredEl?.classList.add("locked");

    const ctx = this.ctx;
    ctx.clearRect(0, this.winTop, this.width, this.winH);
    const heads = this.activeHeads();
    const nA = heads.length;
    const rowH = this.rowH;
    const x0 = this.leftW + LINE_INSET;
    const x1 = this.leftW + LINE_GAP - LINE_INSET;
    // Boxes go behind the *other* column: keys when a query is hovered, and vice versa (BertViz).
    const boxX = hv.side === "left" ? this.leftW + LINE_GAP : 0;
    const boxW = (hv.side === "left" ? this.rightW : this.leftW) / Math.max(1, nA);
    const n = hv.side === "left" ? K : Q;
    const yh = (hv.index + 0.5) * rowH;
    // weight(h, other) for the hovered token: row i of head h, or column j.
    const at = (h: number, o: number): number =>
      hv.side === "left" ? weights[(h * Q + hv.index) * K + o] : weights[(h * Q + o) * K + hv.index];

    ctx.lineWidth = rowH >= 16 ? 2 : 1;
    const paths: (Path2D | null)[] = new Array(BUCKETS);
    heads.forEach((h, slot) => {
      const color = this.colorOf(h);
      ctx.fillStyle = color;
      paths.fill(null);
      for (let o = 0; o < n; o++) {
        const w = at(h, o);
        if (w >= MIN_ALPHA) {
          ctx.globalAlpha = Math.min(1, w);
          ctx.fillRect(boxX + slot * boxW, o * rowH, boxW, rowH);
        }
        if (w >= (MIN_ALPHA * nA) / this.gain) {
          const b = bucketOf((w * this.gain) / nA);
          let p = paths[b];
          if (!p) p = paths[b] = new Path2D();
          const yo = (o + 0.5) * rowH;
          p.moveTo(x0, hv.side === "left" ? yh : yo);
          p.lineTo(x1, hv.side === "left" ? yo : yh);
        }
      }
      this.strokeBuckets(paths, color);
    });
    ctx.globalAlpha = 1;
  }

  /**
   * The current picture (full, or the hovered/locked token's lines and boxes) as vector shapes in canvas CSS px
   * (origin at the canvas's top-left; rows outside the canvas window included), for the SVG export. null when it
   * would be too many shapes for a sensible SVG (the export then embeds the bitmap).
   */
  vector(maxShapes = 250_000): VectorShape[] | null {
    if (!this.data) return null;
    const { Q, K, weights } = this.data.attn;
    const heads = this.activeHeads();
    const rowH = this.rowH;
    const x0 = this.leftW + LINE_INSET;
    const x1 = this.leftW + LINE_GAP - LINE_INSET;
    const top = this.winTop;
    const out: VectorShape[] = [];
    const width = rowH >= 16 ? 2 : 1;
    const hv = this.hover;
    if (!hv) {
      const nA = heads.length / this.gain;
      for (const h of heads) {
        const color = this.colorOf(h);
        for (let i = 0; i < Q; i++) {
          const base = (h * Q + i) * K;
          const rowMin = Math.max(MIN_ALPHA * nA, kthLargest(weights, base, K, this.topK));
          for (let j = 0; j < K; j++) {
            const w = weights[base + j] as number;
            if (w < rowMin) continue;
            if (out.length >= maxShapes) return null;
            const alpha = BUCKET_ALPHA[bucketOf(w / nA)] as number;
            out.push({ line: [x0, (i + 0.5) * rowH - top, x1, (j + 0.5) * rowH - top], color, alpha, width });
          }
        }
      }
      return out;
    }
    const nA = heads.length;
    const boxX = hv.side === "left" ? this.leftW + LINE_GAP : 0;
    const boxW = (hv.side === "left" ? this.rightW : this.leftW) / Math.max(1, nA);
    const n = hv.side === "left" ? K : Q;
    const yh = (hv.index + 0.5) * rowH - top;
    heads.forEach((h, slot) => {
      const color = this.colorOf(h);
      for (let o = 0; o < n; o++) {
        const w = (hv.side === "left" ? weights[(h * Q + hv.index) * K + o] : weights[(h * Q + o) * K + hv.index]) as number;
        if (w >= MIN_ALPHA) out.push({ rect: [boxX + slot * boxW, o * rowH - top, boxW, rowH], color, alpha: Math.min(1, w) });
        if (w >= (MIN_ALPHA * nA) / this.gain) {
          const yo = (o + 0.5) * rowH - top;
          const alpha = BUCKET_ALPHA[bucketOf((w * this.gain) / nA)] as number;
          out.push({ line: hv.side === "left" ? [x0, yh, x1, yo] : [x0, yo, x1, yh], color, alpha, width });
        }
      }
    });
    return out;
  }
}

export type VectorCanvas = HTMLCanvasElement & { tbaVector?: () => VectorShape[] | null };

export interface VectorShape {
  line?: [number, number, number, number];
  rect?: [number, number, number, number];
  color: string;
  alpha: number;
  width?: number;
}
