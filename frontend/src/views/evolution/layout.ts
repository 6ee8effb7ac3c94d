// The evolution view's building blocks: its stylesheet, titled panels, DPR-sized canvases and number format,
// and what the grid and the time series draw (Shown: the chosen metric at the shared step).

import type { MetricSeries } from "./api";
import { page } from "../../shell/page";

const CSS = `
.evo-view { display: flex; flex-direction: column; gap: 14px; }
.evo-row { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.evo-panel h3 { font-size: 13px; font-weight: 600; margin: 0 0 6px; color: var(--tba-fg); }
.evo-panel .evo-note { font-size: 12px; color: var(--tba-muted); margin-top: 4px; max-width: 520px; }
.evo-with-bar { display: flex; gap: 10px; align-items: flex-start; }
.evo-grid, .evo-series, .evo-rollout { cursor: pointer; display: block; }
.evo-rank { border-collapse: collapse; font-size: 12px; font-variant-numeric: tabular-nums; }
.evo-rank td, .evo-rank th { padding: 2px 8px; text-align: right; }
.evo-rank tbody tr { cursor: pointer; }
.evo-rank tbody tr:hover { background: var(--tba-hover); }
.evo-rank th { color: var(--tba-muted); font-weight: 500; }
.evo-residual { width: 4.5em; }
`;

let styled = false;

export function addStyle(): void {
  if (styled) return;
  styled = true;
  const s = document.createElement("style");
  s.textContent = CSS;
  page().styles.appendChild(s);
}

export function panel(title: string, ...children: HTMLElement[]): [HTMLDivElement, HTMLHeadingElement] {
  const d = document.createElement("div");
  d.className = "evo-panel";
  const h = document.createElement("h3");
  h.textContent = title;
  d.append(h, ...children);
  return [d, h];
}

export function canvas(cls: string, id: string): HTMLCanvasElement {
  const c = document.createElement("canvas");
  c.className = cls;
  c.id = id;
  return c;
}

/** Sizes `c` to w × h CSS px at device resolution; the context draws in CSS px. */
export function sizeCanvas(c: HTMLCanvasElement, w: number, h: number): CanvasRenderingContext2D | null {
  const dpr = window.devicePixelRatio || 1;
  c.style.width = `${w}px`;
  c.style.height = `${h}px`;
  c.width = Math.round(w * dpr);
  c.height = Math.round(h * dpr);
  const ctx = c.getContext("2d");
  ctx?.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

export function fmt(v: number): string {
  if (!Number.isFinite(v)) return "—";
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(3);
}

export interface Range {
  lo: number;
  hi: number;
}

export interface Cell {
  layer: number;
  head: number;
}

/** The chosen metric as the grid and the time series draw it. */
export interface Shown {
  m: MetricSeries;
  /** The metric's values, [S, L, H] row-major. */
  values: Float32Array;
  /** Colour / y range: the metric's fixed range, else the data's. */
  range: Range;
  label: string;
  /** Index into `m.steps` of the metrics in effect at the shared step. */
  index: number;
  /** The shared step. */
  step: number;
  hover: Cell | null;
  /** The model's layer / head numbers of stored layer l, head h (a logged subset is not renumbered). */
  names: Names;
}

export interface Names {
  layer: (l: number) => number;
  head: (l: number, h: number) => number;
}
