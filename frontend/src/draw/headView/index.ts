// BertViz-style head view: queries ("from") on the left, keys ("to") on the right, one line per (head, query,
// key) with colour = head colour and opacity = weight / number of active heads. Shared by the head view tab and
// the model view's enlarged thumbnail. This file is the component: token columns (DOM), hover / click-to-lock,
// and when to repaint; paths.ts decides which lines are drawn, window.ts keeps the canvas to the visible rows.

import type { Attention } from "../../data/api";
import { HoverLock } from "../../controls/hoverLock";
import { delegateTokens, onPageScroll } from "./events";
import type { VectorCanvas, VectorShape } from "../../export/vector";
import { headColor } from "../palette";
import { displayText, rowHeightFor } from "../tokens";
import {
  buildLinePaths,
  drawHoverLines,
  LINE_GAP,
  lineWidth,
  vectorShapes,
  type Hover,
  type LinePath,
  type LineScene,
  type Side,
} from "./paths";
import { CanvasWindow } from "./window";

// The fitted line band: narrower than this and the lines' slopes cannot be told apart; wider and they flatten out.
const MIN_GAP = 160;
const MAX_GAP = 900;

export interface HeadViewData {
  /** Query tokens (left column). */
  left: string[];
  /** Key tokens (right column): the query tokens for self-attention, `key_tokens` for cross-attention. */
  right: string[];
  attn: Attention;
}

export class HeadView {
  readonly root: HTMLDivElement;
  /** Called after every hover change with the time the redraw took (ms), for benchmarks. */
  onHoverDrawn: ((ms: number) => void) | null = null;

  private readonly win: CanvasWindow;
  private readonly leftCol: HTMLDivElement;
  private readonly rightCol: HTMLDivElement;

  private readonly lock = new HoverLock<Hover>(
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
  private hover: Hover | null = null;
  private hoveredEl: HTMLElement | null = null;
  // Built once per data / head selection; re-stroked for every window position.
  private linePaths: LinePath[] = [];

  // Layout of the current token columns.
  private layoutKey = "";
  private rowH = 20;
  private leftW = 0;
  private rightW = 0;
  private width = 0;
  private height = 0;
  private gap = LINE_GAP;
  private fit: (() => number) | null = null;

  /** Lines per query in the full view: 0 = all, else only each query's k strongest keys (long sequences). */
  topK = 0;
  /** Line opacity = weight ÷ active heads × gain (1 = BertViz). */
  gain = 1;
  /** Colour of head h's lines (the model view's enlarged thumbnail uses its layer colour). */
  colorOf: (h: number) => string = headColor;

  constructor(canvasId = "head-canvas") {
    this.root = document.createElement("div");
    this.root.className = "head-view";
    this.win = new CanvasWindow(canvasId);
    // The SVG export asks the canvas for vector shapes instead of its bitmap (export/vector.ts).
    (this.win.canvas as VectorCanvas).tbaVector = () => this.vector();
    this.root.appendChild(this.win.canvas);
    this.leftCol = this.column("left");
    this.rightCol = this.column("right");

    // Delegated hover: one listener set instead of two per token. Click locks the token (Esc unlocks).
    delegateTokens(this.root, this.lock);
    onPageScroll(
      () => true,
      () => {
        if (this.data && this.placeWindow(false)) this.drawWindow();
      },
    );
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
  onTokenChange: ((cur: Hover | null) => void) | null = null;

  /** The hovered or locked token, if any. */
  currentToken(): Hover | null {
    return this.hover;
  }

  /** The locked token, if any (deep links). */
  lockedToken(): Hover | null {
    return this.lock.isLocked ? this.lock.current : null;
  }

  /** Locks `t` (a deep link's token); nothing when it is already the locked one or out of range. */
  lockToken(t: Hover): void {
    const n = this.data ? (t.side === "left" ? this.data.left.length : this.data.right.length) : 0;
    const cur = this.lockedToken();
    if (t.index < n && !(cur && cur.side === t.side && cur.index === t.index)) this.lock.click(t);
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
    const ctx = this.win.ctx;
    ctx.font = font;
    const colWidth = (tokens: string[]): number => {
      let w = 0;
      for (const t of tokens) w = Math.max(w, ctx.measureText(displayText(t)).width);
      // At least 90 px: hover boxes split the column into one slice per head and must stay visible.
      return Math.ceil(Math.min(200, Math.max(76, w))) + 14;
    };
    this.leftW = colWidth(left);
    this.rightW = colWidth(right);
    this.gap = this.bandWidth();
    this.width = this.leftW + this.gap + this.rightW;
    this.height = n * this.rowH;

    this.win.setWidth(this.width);
    this.root.style.width = `${this.width}px`;
    this.root.style.height = `${this.height}px`;
    this.root.style.setProperty("--row-h", `${this.rowH}px`);
    this.root.style.setProperty("--font-px", `${fontPx}px`);

    this.fillColumn(this.leftCol, left, 0, this.leftW, "left");
    this.fillColumn(this.rightCol, right, this.leftW + this.gap, this.rightW, "right");
    this.hoveredEl = null;
    this.win.baseValid = false;
  }

  /** Lets the line band take the width `avail()` leaves beside the token columns (MIN_GAP–MAX_GAP px), refitted
   * when `el` (the element that decides that width) is resized; without it the band is LINE_GAP wide. */
  fitTo(el: HTMLElement, avail: () => number): void {
    this.fit = avail;
    new ResizeObserver(() => {
      // (Not while hidden: a tab switched away from has no width to fit.)
      if (!this.data || !el.clientWidth || Math.abs(this.bandWidth() - this.gap) < 1) return;
      this.layout(this.data.left, this.data.right);
      this.paint();
    }).observe(el);
  }

  private bandWidth(): number {
    const avail = this.fit?.() ?? 0;
    return avail > 0 ? Math.round(Math.max(MIN_GAP, Math.min(MAX_GAP, avail - this.leftW - this.rightW))) : LINE_GAP;
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

  /** The current data and settings, as the line functions take them. */
  private scene(data: HeadViewData): LineScene {
    const { topK, gain, colorOf, leftW, rightW, rowH, gap } = this;
    return { attn: data.attn, heads: this.activeHeads(), gain, topK, colorOf, leftW, rightW, rowH, gap };
  }

  /** Full repaint (all lines of all active heads), then re-applies the hover if any. */
  paint(): void {
    this.linePaths = this.data ? buildLinePaths(this.scene(this.data)) : [];
    this.placeWindow(true);
    this.drawWindow();
  }

  private placeWindow(force: boolean): boolean {
    return this.win.place(this.root, this.width, this.height, force);
  }

  private drawWindow(): void {
    this.drawBase();
    if (this.hover) {
      this.win.snapshot();
      this.drawHover();
    }
  }

  private drawBase(): void {
    const ctx = this.win.ctx;
    this.win.clear(this.width);
    ctx.lineWidth = lineWidth(this.rowH);
    for (const { color, alpha, path } of this.linePaths) {
      ctx.strokeStyle = color;
      ctx.globalAlpha = alpha;
      ctx.stroke(path);
    }
    ctx.globalAlpha = 1;
    this.win.baseValid = false;
  }

  private setHover(side: Side | null, index: number, redraw = true): void {
    if (this.hoveredEl) this.hoveredEl.classList.remove("hovered", "locked");
    this.hoveredEl = null;
    const wasFull = this.hover === null;
    this.hover = side ? { side, index } : null;
    if (!redraw) return;
    const t0 = performance.now();
    if (this.hover) {
      if (wasFull && !this.win.baseValid) this.win.snapshot(); // the canvas still shows the full picture
      this.drawHover();
    } else if (this.win.baseValid) {
      this.win.restore();
    } else {
      this.drawBase();
    }
    this.onHoverDrawn?.(performance.now() - t0);
  }

  private drawHover(): void {
    const hv = this.hover;
    if (!hv || !this.data) return;
    const col = hv.side === "left" ? this.leftCol : this.rightCol;
    this.hoveredEl = col.querySelector<HTMLElement>(`.token[data-index="${hv.index}"]`);
    this.hoveredEl?.classList.add("hovered");
    if (this.lock.isLocked) this.hoveredEl?.classList.add("locked");
    this.win.clear(this.width);
    drawHoverLines(this.win.ctx, this.scene(this.data), hv);
  }

  /** The current picture (full, or the hovered/locked token's) as vector shapes, for the SVG export. */
  vector(maxShapes = 250_000): VectorShape[] | null {
    if (!this.data) return null;
    return vectorShapes(this.scene(this.data), this.hover, this.win.top, maxShapes);
  }
}
