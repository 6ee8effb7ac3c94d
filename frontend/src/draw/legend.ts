// Colour bars and tick helpers shared by every view: a heatmap, a grid or a rollout always shows which value each
// colour means (matplotlib/Vega's default). The bar is a small canvas; the ticks and the title are DOM text, so the
// PNG/SVG export (export/picture.ts) writes them as text, not pixels.

import { cssColor, scaled, type Scale } from "./colormap";
import type { VectorCanvas, VectorShape } from "../export/vector";

/** About `n` round tick values covering [lo, hi] (1, 2, 2.5 or 5 × 10^k steps). */
export function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi) || hi <= lo) return [lo];
  const raw = (hi - lo) / Math.max(1, n - 1);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 2.5, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step)
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

/** Short tick text: 0.25, 1e-3, 1.2k. */
export function tickText(v: number): string {
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1e4 || a < 1e-3) return v.toExponential(0).replace("e+", "e");
  if (a >= 1000) return `${(v / 1000).toFixed(a >= 1e4 ? 0 : 1)}k`;
  return String(Number(v.toPrecision(3)));
}

export interface BarSpec {
  /** 256-entry RGB lookup table (colormap.ts), or a single colour for an opacity ramp. */
  map: Uint8ClampedArray | string;
  lo: number;
  hi: number;
  /** How values map to colour (as the heatmap draws them); signed maps are symmetric around 0. */
  scale?: Scale;
  signed?: boolean;
  /** What the colour means ("attention weight", "Δ weight", …). */
  title: string;
  /** Text at the ends ("more now" / "less now"), for diverging maps. */
  ends?: [string, string];
  /** Opacity ramps: the opacity of value v is min(1, gain · (v − lo) / (hi − lo)) (line views' weight scaling). */
  gain?: number;
}

const BAR_W = 12;

/** A vertical colour bar with ticks; `set` redraws it (its height follows the picture beside it). */
export class ColorBar {
  readonly el = document.createElement("div");
  private readonly canvas = document.createElement("canvas");
  private readonly ticks = document.createElement("div");
  private readonly title = document.createElement("div");

  constructor(id?: string) {
    this.el.className = "tba-colorbar";
    if (id) this.el.id = id;
    this.title.className = "tba-colorbar-title";
    this.ticks.className = "tba-colorbar-ticks";
    const body = document.createElement("div");
    body.className = "tba-colorbar-body";
    body.append(this.canvas, this.ticks);
    this.el.append(this.title, body);
  }

  set(spec: BarSpec, height: number): void {
    const h = Math.max(60, Math.round(height));
    const dpr = Math.max(1, Math.min(2, window.devicePixelRatio || 1));
    this.canvas.width = Math.round(BAR_W * dpr);
    this.canvas.height = Math.round(h * dpr);
    this.canvas.style.width = `${BAR_W}px`;
    this.canvas.style.height = `${h}px`;
    this.ticks.style.height = `${h}px`;
    this.title.textContent = spec.title;
    this.el.dataset["lo"] = String(spec.lo);
    this.el.dataset["hi"] = String(spec.hi);
    const ctx = this.canvas.getContext("2d");
    const pos = position(spec);
    if (ctx) {
      const H = this.canvas.height;
      ctx.clearRect(0, 0, this.canvas.width, H);
      for (let y = 0; y < H; y++) {
        const v = spec.hi - ((y + 0.5) / H) * (spec.hi - spec.lo); // top = hi
        const t = Math.min(1, Math.max(0, pos(v)));
        // An opacity ramp (line views): the colour at the opacity a line of that weight is drawn with.
        ctx.globalAlpha = typeof spec.map === "string" ? Math.min(1, t * (spec.gain ?? 1)) : 1;
        ctx.fillStyle = typeof spec.map === "string" ? spec.map : cssColor(spec.map, t * 255);
        ctx.fillRect(0, y, this.canvas.width, 1);
      }
      ctx.globalAlpha = 1;
    }
    // Exported as vector bands (sharp at any scale, editable in SVG).
    const bands = 64;
    (this.canvas as VectorCanvas).tbaVector = () =>
      Array.from({ length: bands }, (_, b): VectorShape => {
        const v = spec.hi - ((b + 0.5) / bands) * (spec.hi - spec.lo);
        const t = Math.min(1, Math.max(0, pos(v)));
        const opacity = typeof spec.map === "string";
        return {
          rect: [0, (b * h) / bands, BAR_W, h / bands + 0.02],
          color: opacity ? (spec.map as string) : cssColor(spec.map as Uint8ClampedArray, t * 255),
          alpha: opacity ? Math.min(1, t * (spec.gain ?? 1)) : 1,
        };
      });
    const values = spec.signed
      ? niceTicks(-Math.max(Math.abs(spec.lo), Math.abs(spec.hi)), Math.max(Math.abs(spec.lo), Math.abs(spec.hi)))
      : niceTicks(spec.lo, spec.hi);
    const els = values
      .filter((v) => v >= spec.lo - 1e-12 && v <= spec.hi + 1e-12)
      .map((v) => {
        const t = document.createElement("div");
        t.className = "tba-tick";
        t.textContent = tickText(v);
        // Linear placement by value along the bar; the colour at that height is the colour of that value.
        t.style.top = `${(1 - (v - spec.lo) / (spec.hi - spec.lo || 1)) * h}px`;
        return t;
      });
    if (spec.ends) {
      const [top, bottom] = spec.ends;
      const a = document.createElement("div");
      a.className = "tba-colorbar-end";
      a.textContent = top;
      const b = document.createElement("div");
      b.className = "tba-colorbar-end";
      b.textContent = bottom;
      this.el.replaceChildren(this.title, a, this.canvas.parentElement as HTMLElement, b);
    }
    this.ticks.replaceChildren(...els);
  }
}

/** Value → position 0..1 along the colour map, as the heatmaps compute it (scale applied to |v| / vmax). */
function position(spec: BarSpec): (v: number) => number {
  const scale = spec.scale ?? "linear";
  if (spec.signed) {
    const vmax = Math.max(Math.abs(spec.lo), Math.abs(spec.hi)) || 1;
    return (v) => {
      const t = scaled(Math.abs(v) / vmax, scale);
      return 0.5 + (v < 0 ? -t : t) / 2;
    };
  }
  return (v) => scaled((v - spec.lo) / (spec.hi - spec.lo || 1), scale);
}

/** CSS for the colour bars (installed with the shell's styles). */
export const LEGEND_CSS = `
.tba-colorbar { display: inline-flex; flex-direction: column; gap: 4px; font-size: 11px; color: var(--tba-muted);
  align-self: flex-start; }
.tba-colorbar-title { font-weight: 500; max-width: 120px; white-space: normal; }
.tba-colorbar-end { font-size: 11px; }
.tba-colorbar-body { display: flex; gap: 4px; }
.tba-colorbar-body > canvas { border: 1px solid var(--tba-border); box-sizing: content-box; }
.tba-colorbar-ticks { position: relative; min-width: 34px; }
.tba-tick { position: absolute; left: 0; transform: translateY(-50%); white-space: nowrap;
  font-variant-numeric: tabular-nums; }
.tba-tick::before { content: ""; display: inline-block; width: 4px; height: 1px; background: currentColor;
  vertical-align: middle; margin-right: 3px; margin-left: -4px; }
`;
