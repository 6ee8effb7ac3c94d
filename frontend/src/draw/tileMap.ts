// One head as a tile pyramid that pans and zooms like a map (the matrix view beyond 1,024 × 1,024 weights, and
// every "qk" layer): the canvas shows a window of the head at the level whose cells are ≥ 1 device pixel
// (tileGrid.ts). Tiles come from the `tile` route through the shell's LRU (shell/lodLoaders.ts); until a tile
// arrives, the coarser ones already here are drawn stretched under it, so a pan or zoom never shows a hole. Wheel
// zooms around the pointer, drag pans, double-click zooms in, Esc resets. Axes, labels, tooltip: tileAxes.ts.

import { CODE_WEIGHT, type Tile } from "../data/lod";
import { VIRIDIS, type Scale } from "./colormap";
import { ColorBar } from "./legend";
import { TileAxes } from "./tileAxes";
import { codeColors, coarsestLevel, levelFor, maxCode, tileCanvas, tileCells, tileSpan, TILE } from "./tileGrid";

/** What the map draws: one head of Q × K weights, its tiles fetched by `load`. */
export interface TileSource {
  /** Identity (probe, step, layer, head): a new key drops the painted tiles. */
  key: string;
  Q: number;
  K: number;
  left: string[];
  right: string[];
  load(level: number, row: number, col: number): Promise<Tile>;
}

/** The visible window in weights: queries [q0, q1), keys [k0, k1). */
export interface TileWindow {
  q0: number;
  q1: number;
  k0: number;
  k1: number;
}

/** Test and benchmark hooks (page().hooks.__tbaTiles; frontend/VIEWS.md). */
export interface TileStats {
  level: number;
  /** Tiles painted since the page opened (one per arrival drawn), and requests made. */
  painted: number;
  requested: string[];
  /** Every tile the window needs at its level is painted. */
  settled: boolean;
  /** ms from the last pan/zoom (or new data) to settled. */
  settleMs: number;
  /** ms from a pan/zoom to the first tile of its level painted (the "next tile"). */
  nextTileMs: number;
}

const MAX_PX_PER_CELL = 32;
const IN_FLIGHT = 4;
const PAINTED_KEEP = 256;

export class TileMap {
  readonly root = document.createElement("div");
  readonly canvas = document.createElement("canvas");
  private readonly axes: TileAxes;
  private readonly bar: ColorBar;
  private readonly caption = document.createElement("div");
  private src: TileSource | null = null;
  private levels = 0;
  private scale: Scale = "sqrt";
  private vmax = 1;
  private colors: Uint8ClampedArray | null = null;
  // Painted tiles (canvas of one pixel per cell) by "level/row/col", in recency order.
  private readonly ready = new Map<string, { tile: Tile; canvas: HTMLCanvasElement }>();
  private readonly queue: [number, number, number][] = [];
  private readonly flying = new Set<string>();
  private view = { x0: 0, y0: 0, s: 1 };
  private W = 512;
  private H = 512;
  private drag: { x: number; y: number; x0: number; y0: number } | null = null;
  private frame = 0;
  private movedAt = 0;
  private nextPending = false;
  private coarseWaiters: (() => void)[] = [];
  readonly stats: TileStats = { level: 0, painted: 0, requested: [], settled: false, settleMs: NaN, nextTileMs: NaN };
  /** The user panned or zoomed (deep links follow). */
  onMove: (() => void) | null = null;
  onError: ((e: unknown) => void) | null = null;

  constructor(prefix: string) {
    this.root.className = "tm-root";
    this.canvas.id = `${prefix}-tiles`;
    this.canvas.className = "tm-canvas hm-plot";
    this.bar = new ColorBar(`${prefix}-tiles-colorbar`);
    this.axes = new TileAxes(this.canvas);
    const frame = document.createElement("div");
    frame.className = "hm-frame tm-frame";
    frame.append(this.axes.top, this.axes.side, this.canvas, this.bar.el);
    this.caption.className = "hm-caption";
    this.root.append(frame, this.caption, this.axes.tip);
    this.canvas.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
    this.canvas.addEventListener("mousedown", (e) => {
      this.drag = { x: e.clientX, y: e.clientY, x0: this.view.x0, y0: this.view.y0 };
      e.preventDefault();
    });
    window.addEventListener("mousemove", (e) => {
      if (!this.drag) return;
      const s = this.view.s;
      this.moveTo(this.drag.x0 - (e.clientX - this.drag.x) / s, this.drag.y0 - (e.clientY - this.drag.y) / s, s);
    });
    window.addEventListener("mouseup", () => (this.drag = null));
    this.canvas.addEventListener("dblclick", (e) => this.zoomAt(e, 2));
    this.canvas.addEventListener("mousemove", (e) => this.hover(e));
    this.canvas.addEventListener("mouseleave", () => this.axes.hideTip());
  }

  /** New head (or colour scale). Resolves when the coarsest tile is painted: the first paint. */
  async set(src: TileSource, scale: Scale, size: number): Promise<void> {
    const n = Math.max(src.Q, src.K);
    const W = Math.max(64, Math.round((size * src.K) / n));
    const H = Math.max(64, Math.round((size * src.Q) / n));
    const sameShape = this.src && this.src.Q === src.Q && this.src.K === src.K && this.W === W && this.H === H;
    if (!this.src || this.src.key !== src.key) {
      this.ready.clear();
      this.queue.length = 0;
    }
    if (this.scale !== scale) this.ready.clear(); // colours are baked into the painted tiles
    this.src = src;
    this.scale = scale;
    this.levels = coarsestLevel(src.Q, src.K);
    this.W = W;
    this.H = H;
    const dpr = this.dpr();
    this.canvas.width = Math.round(W * dpr);
    this.canvas.height = Math.round(H * dpr);
    this.canvas.style.width = `${W}px`;
    this.canvas.style.height = `${H}px`;
    if (!sameShape) this.fit();
    const top = this.levels;
    this.stats.requested.push(`${top}/0/0`); // the first request: what the first paint shows
    const coarse = await src.load(top, 0, 0);
    if (this.src !== src) return;
    // The coarsest tile's largest cell is the head's largest weight: the colour range, as the small matrix's.
    this.vmax = (CODE_WEIGHT[maxCode(coarse.codes)] as number) || 1e-9;
    this.colors = codeColors(VIRIDIS, this.vmax, scale);
    this.bar.set(
      { map: VIRIDIS, lo: 0, hi: this.vmax, scale, title: "attention weight (largest in each cell)" },
      this.H,
    );
    this.store(coarse);
    this.movedAt = performance.now();
    this.nextPending = true;
    this.paint();
    await new Promise<void>((r) => (this.ready.has(`${top}/0/0`) ? r() : this.coarseWaiters.push(r)));
  }

  /** The visible window, for deep links and the caption. */
  window(): TileWindow {
    const { x0, y0, s } = this.view;
    const src = this.src;
    const Q = src?.Q ?? 0;
    const K = src?.K ?? 0;
    const c = (v: number, n: number): number => Math.max(0, Math.min(n, Math.round(v)));
    return { q0: c(y0, Q), q1: c(y0 + this.H / s, Q), k0: c(x0, K), k1: c(x0 + this.W / s, K) };
  }

  /** Shows queries [q0, q1) × keys [k0, k1) as closely as the canvas' aspect allows (deep links, tests). */
  zoomTo(w: TileWindow): void {
    const s = Math.min(this.W / Math.max(1, w.k1 - w.k0), this.H / Math.max(1, w.q1 - w.q0));
    this.moveTo((w.k0 + w.k1) / 2 - this.W / (2 * s), (w.q0 + w.q1) / 2 - this.H / (2 * s), s);
  }

  /** The whole head; false when it was already shown whole. */
  fit(): boolean {
    const src = this.src;
    if (!src) return false;
    const s = Math.min(this.W / src.K, this.H / src.Q);
    const was = this.view.s === s && this.view.x0 === 0 && this.view.y0 === 0;
    this.view = { x0: 0, y0: 0, s };
    if (!was) this.moved();
    return !was;
  }

  get zoomed(): boolean {
    const src = this.src;
    return !!src && this.view.s > Math.min(this.W / src.K, this.H / src.Q) * 1.0001;
  }

  private dpr(): number {
    return Math.max(1, Math.min(2, window.devicePixelRatio || 1));
  }

  private onWheel(e: WheelEvent): void {
    e.preventDefault();
    this.zoomAt(e, Math.exp(-e.deltaY * 0.0015));
  }

  private zoomAt(e: MouseEvent, factor: number): void {
    const r = this.canvas.getBoundingClientRect();
    const px = e.clientX - r.left;
    const py = e.clientY - r.top;
    const { x0, y0, s } = this.view;
    const s1 = this.clampScale(s * factor);
    this.moveTo(x0 + px / s - px / s1, y0 + py / s - py / s1, s1);
  }

  private clampScale(s: number): number {
    const src = this.src;
    if (!src) return s;
    return Math.max(Math.min(this.W / src.K, this.H / src.Q), Math.min(MAX_PX_PER_CELL, s));
  }

  private moveTo(x0: number, y0: number, s: number): void {
    const src = this.src;
    if (!src) return;
    s = this.clampScale(s);
    const clamp = (v: number, n: number, px: number): number => Math.max(0, Math.min(Math.max(0, n - px / s), v));
    this.view = { x0: clamp(x0, src.K, this.W), y0: clamp(y0, src.Q, this.H), s };
    this.moved();
    this.onMove?.();
  }

  private moved(): void {
    this.movedAt = performance.now();
    this.nextPending = true;
    this.stats.settled = false;
    this.schedule();
  }

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.paint();
    });
  }

  /** Draws every painted tile from the coarsest level down to the target one, and queues the missing ones. */
  paint(): void {
    const src = this.src;
    const ctx = this.canvas.getContext("2d");
    if (!src || !ctx || !this.colors) return;
    const dpr = this.dpr();
    const { x0, y0, s } = this.view;
    const target = levelFor(s, dpr, this.levels);
    this.stats.level = target;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    const k1 = x0 + this.W / s;
    const q1 = y0 + this.H / s;
    let missing = 0;
    for (let lv = this.levels; lv >= target; lv--) {
      const [r0, r1] = tileSpan(lv, y0, q1, src.Q);
      const [c0, c1] = tileSpan(lv, x0, k1, src.K);
      const side = TILE * 2 ** lv;
      for (let r = r0; r <= r1; r++) {
        for (let c = c0; c <= c1; c++) {
          const t = this.ready.get(`${lv}/${r}/${c}`);
          if (!t) {
            if (lv === target) {
              missing++;
              this.want(lv, r, c);
            }
            continue;
          }
          const { h, w } = tileCells(lv, r, c, src.Q, src.K);
          const cell = 2 ** lv;
          // Device pixels, rounded so neighbouring tiles meet without seams.
          const X = Math.round((c * side - x0) * s * dpr);
          const Y = Math.round((r * side - y0) * s * dpr);
          const X1 = Math.round((c * side + w * cell - x0) * s * dpr);
          const Y1 = Math.round((r * side + h * cell - y0) * s * dpr);
          ctx.drawImage(t.canvas, X, Y, X1 - X, Y1 - Y);
        }
      }
    }
    this.pump();
    const win = this.window();
    this.axes.draw(src, win, this.view, this.W, this.H);
    const cell = 2 ** target;
    this.caption.textContent =
      `${src.Q.toLocaleString("en-US")} × ${src.K.toLocaleString("en-US")} · level ${target}` +
      (cell > 1 ? ` (each cell the largest of ${cell} × ${cell} weights)` : " (one cell per weight)") +
      ` · queries ${win.q0}–${win.q1 - 1}, keys ${win.k0}–${win.k1 - 1}` +
      " · wheel: zoom, drag: pan, double-click: zoom in" +
      (this.zoomed ? ", Esc: reset" : "");
    const settled = missing === 0;
    if (settled && !this.stats.settled) this.stats.settleMs = performance.now() - this.movedAt;
    this.stats.settled = settled;
    this.root.dataset["tileLevel"] = String(target);
    this.root.dataset["tilesSettled"] = settled ? "1" : "0";
    this.root.dataset["zoom"] = `${win.q0},${win.q1},${win.k0},${win.k1}`;
  }

  private want(level: number, row: number, col: number): void {
    const id = `${level}/${row}/${col}`;
    if (this.flying.has(id) || this.queue.some(([l, r, c]) => l === level && r === row && c === col)) return;
    this.queue.push([level, row, col]);
  }

  /** Starts queued requests (at most IN_FLIGHT), skipping those the window no longer needs. */
  private pump(): void {
    const src = this.src;
    if (!src) return;
    while (this.flying.size < IN_FLIGHT && this.queue.length) {
      const [lv, r, c] = this.queue.shift() as [number, number, number];
      if (!this.visible(lv, r, c)) continue;
      const id = `${lv}/${r}/${c}`;
      this.flying.add(id);
      this.stats.requested.push(id);
      if (this.stats.requested.length > 2000) this.stats.requested.splice(0, 1000);
      src.load(lv, r, c).then(
        (t) => {
          this.flying.delete(id);
          if (this.src !== src) return;
          this.store(t);
          if (lv === levelFor(this.view.s, this.dpr(), this.levels) && this.nextPending) {
            this.nextPending = false;
            this.stats.nextTileMs = performance.now() - this.movedAt;
          }
          this.stats.painted++;
          this.schedule();
        },
        (e: unknown) => {
          this.flying.delete(id);
          if (this.src === src) this.onError?.(e);
        },
      );
    }
  }

  private visible(lv: number, r: number, c: number): boolean {
    const src = this.src as TileSource;
    const { x0, y0, s } = this.view;
    if (lv !== levelFor(s, this.dpr(), this.levels)) return false;
    const [r0, r1] = tileSpan(lv, y0, y0 + this.H / s, src.Q);
    const [c0, c1] = tileSpan(lv, x0, x0 + this.W / s, src.K);
    return r >= r0 && r <= r1 && c >= c0 && c <= c1;
  }

  private store(t: Tile): void {
    const id = `${t.level}/${t.row}/${t.col}`;
    this.ready.delete(id);
    this.ready.set(id, { tile: t, canvas: tileCanvas(t.codes, t.h, t.w, this.colors as Uint8ClampedArray) });
    const top = `${this.levels}/0/0`;
    for (const k of this.ready.keys()) {
      if (this.ready.size <= PAINTED_KEEP) break;
      if (k !== top) this.ready.delete(k); // the coarsest tile is the fallback under everything: keep it
    }
    if (id === top) for (const r of this.coarseWaiters.splice(0)) r();
  }

  /** The finest painted cell under weight (i, j), for the tooltip and tests. */
  cellAt(i: number, j: number): { level: number; code: number; q0: number; q1: number; k0: number; k1: number } | null {
    const src = this.src;
    if (!src) return null;
    for (let lv = levelFor(this.view.s, this.dpr(), this.levels); lv <= this.levels; lv++) {
      const cell = 2 ** lv;
      const a = Math.floor(i / cell);
      const b = Math.floor(j / cell);
      const t = this.ready.get(`${lv}/${Math.floor(a / TILE)}/${Math.floor(b / TILE)}`);
      if (!t) continue;
      const code = t.tile.codes[(a % TILE) * t.tile.w + (b % TILE)] as number;
      const q0 = a * cell;
      const k0 = b * cell;
      return { level: lv, code, q0, q1: Math.min(src.Q, q0 + cell), k0, k1: Math.min(src.K, k0 + cell) };
    }
    return null;
  }

  private hover(e: MouseEvent): void {
    const src = this.src;
    if (!src || this.drag) return;
    const r = this.canvas.getBoundingClientRect();
    const j = Math.floor(this.view.x0 + (e.clientX - r.left) / this.view.s);
    const i = Math.floor(this.view.y0 + (e.clientY - r.top) / this.view.s);
    if (i < 0 || j < 0 || i >= src.Q || j >= src.K) return this.axes.hideTip();
    const c = this.cellAt(i, j);
    this.axes.showTip(e, src, i, j, c && { ...c, weight: CODE_WEIGHT[c.code] as number });
  }
}
