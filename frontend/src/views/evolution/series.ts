// Small multiples: one time series per head of the chosen metric over every logged step (all plots share the
// metric's range), with value ticks at the left of each row and step ticks under each column, the hovered head
// highlighted and the shared step as a dashed cursor (in the cursor colour, not the panel border's). Clicking a
// plot moves the shared step (the view wires the events). Drawn from vector shapes, which the exports reuse.

import type { MetricSeries } from "./api";
import { niceTicks, tickText } from "../../draw/legend";
import { tokenColor } from "../../shell/theme";
import { canvas, fmt, panel, sizeCanvas, type Cell, type Shown } from "./layout";
import { paintShapes, type VectorCanvas, type VectorShape } from "../../export/vector";

const X0 = 64; // room for the row label and its value ticks
const Y0 = 18;
const BOTTOM = 30; // step ticks and the axis title under the last row
const MAX_VECTOR_POINTS = 250_000;

export class SeriesPanel {
  readonly canvas = canvas("evo-series", "evo-series");
  readonly el: HTMLDivElement;
  private readonly title: HTMLHeadingElement;
  private geom = { x0: 0, y0: 0, w: 0, h: 0, gap: 0, lo: 0, hi: 1 };

  constructor() {
    [this.el, this.title] = panel("", this.canvas);
  }

  draw(s: Shown): void {
    const m = s.m;
    const { L, H, steps } = m;
    const avail = Math.max(480, Math.min(1500, (window.innerWidth || 1280) - 60));
    const gap = 8;
    const w = Math.max(44, Math.floor((avail - X0) / H) - gap);
    const h = Math.max(36, Math.min(72, Math.round(w * 0.6)));
    const ctx = sizeCanvas(this.canvas, X0 + H * (w + gap), Y0 + L * (h + gap) + BOTTOM);
    const { lo, hi } = s.range;
    this.geom = { x0: X0, y0: Y0, w, h, gap, lo, hi };
    this.canvas.dataset["geom"] = JSON.stringify(this.geom); // where the plots are (tests click them)
    this.title.textContent = `${s.label} over ${steps.length} steps (every plot ${fmt(lo)}–${fmt(hi)}; dashed line = current step)`;
    if (!ctx) return;
    const fg = tokenColor("--tba-muted");
    const line = tokenColor("--tba-line");
    const v = s.values;
    const S = steps.length;
    const first = steps[0] as number;
    const last = steps[S - 1] as number;
    const span = Math.max(1, last - first);
    const xOf = (step: number): number => ((step - first) / span) * (w - 2) + 1;
    const scaleY = (h - 4) / (hi - lo);
    const yOf = (x: number): number => h - 2 - (Math.min(hi, Math.max(lo, x)) - lo) * scaleY;
    // Drawn from vector shapes, which the SVG/PDF exports take as they are (axes and text stay vector there).
    const out: VectorShape[] = [];
    const FONT = "10px sans-serif";
    const label = (t: string, x: number, y: number, align: "left" | "center" | "right"): void => {
      out.push({ text: t, at: [x, y], font: FONT, align, color: fg, alpha: 1 });
    };
    const tick = (x: number, y: number, tw: number, th: number): void => {
      out.push({ rect: [x, y, tw, th], color: fg, alpha: 1 });
    };
    // Column titles (heads) and row labels with value ticks (shared range: the same ticks on every row).
    const every = Math.ceil(24 / (w + gap));
    for (let hd = 0; hd < H; hd += every)
      label(`H${s.names.head(0, hd)}`, X0 + hd * (w + gap) + w / 2, Y0 - 9, "center");
    const vTicks = niceTicks(lo, hi, h >= 56 ? 3 : 2).filter((t) => t >= lo && t <= hi);
    for (let l = 0; l < L; l++) {
      const oy = Y0 + l * (h + gap);
      label(`L${s.names.layer(l)}`, 2, oy + h / 2, "left");
      for (const t of vTicks) {
        label(tickText(t), X0 - 6, oy + yOf(t), "right");
        tick(X0 - 4, Math.round(oy + yOf(t)), 3, 1);
      }
    }
    // Step ticks under every column of the last row.
    const sTicks = niceTicks(first, last, w >= 90 ? 3 : 2).filter((t) => t >= first && t <= last);
    const by = Y0 + L * (h + gap) - gap;
    for (let hd = 0; hd < H; hd++) {
      const ox = X0 + hd * (w + gap);
      for (const t of sTicks) {
        const x = xOf(t);
        tick(Math.round(ox + x), by + 1, 1, 3);
        // Ends aligned inwards: the last tick of one column never runs into the first of the next.
        label(tickText(t), ox + x, by + 10, x < 12 ? "left" : x > w - 12 ? "right" : "center");
      }
    }
    label("training step →", X0 + (H * (w + gap)) / 2, by + 23, "center");
    const plotBg = tokenColor("--tba-plot-bg");
    const border = tokenColor("--tba-border");
    const accent = tokenColor("--tba-accent-line");
    for (let l = 0; l < L; l++) {
      for (let hd = 0; hd < H; hd++) {
        const ox = X0 + hd * (w + gap);
        const oy = Y0 + l * (h + gap);
        const hovered = s.hover && s.hover.layer === l && s.hover.head === hd;
        out.push({ rect: [ox, oy, w, h], color: plotBg, alpha: 1 });
        const [bx, by0, bx1, by1] = [ox + 0.5, oy + 0.5, ox + w - 0.5, oy + h - 0.5];
        out.push({ path: [bx, by0, bx1, by0, bx1, by1, bx, by1, bx, by0], color: hovered ? accent : border, alpha: 1 });
        let path: number[] = [];
        const flush = (): void => {
          if (path.length >= 4) out.push({ path, color: hovered ? accent : line, alpha: 1, width: hovered ? 1.5 : 1 });
          path = [];
        };
        for (let i = 0; i < S; i++) {
          const x = v[(i * L + l) * H + hd] as number;
          if (!Number.isFinite(x)) flush();
          else path.push(ox + xOf(steps[i] as number), oy + yOf(x));
        }
        flush();
      }
    }
    // The shared step cursor: dashed, in its own colour, inside each plot (never confused with a border).
    const cursor = tokenColor("--tba-cursor");
    const cx = xOf(s.step);
    for (let l = 0; l < L; l++) {
      for (let hd = 0; hd < H; hd++) {
        const px = Math.round(X0 + hd * (w + gap) + cx) + 0.5;
        const oy = Y0 + l * (h + gap);
        out.push({ path: [px, oy + 1, px, oy + h - 1], color: cursor, alpha: 1, width: 1.5, dash: [3, 2] });
      }
    }
    paintShapes(ctx, out);
    // Very long runs (over MAX_VECTOR_POINTS plotted points) export as a bitmap: an SVG of millions of points helps
    // no one.
    (this.canvas as VectorCanvas).tbaVector = () => (S * L * H <= MAX_VECTOR_POINTS ? out : null);
  }

  /** The plot under the mouse, as last drawn, and where along its step axis (0..1). */
  cellAt(e: MouseEvent, m: MetricSeries | null): (Cell & { t: number }) | null {
    if (!m) return null;
    const r = this.canvas.getBoundingClientRect();
    const { x0, y0, w, h, gap } = this.geom;
    const x = e.clientX - r.left - x0;
    const y = e.clientY - r.top - y0;
    const head = Math.floor(x / (w + gap));
    const layer = Math.floor(y / (h + gap));
    if (layer < 0 || layer >= m.L || head < 0 || head >= m.H) return null;
    return { layer, head, t: Math.min(1, Math.max(0, (x - head * (w + gap) - 1) / (w - 2))) };
  }
}
