// The layer × head grid: the chosen metric at the shared step, one viridis cell per head (grey = undefined) with a
// colour bar, the hovered head outlined. Clicking a cell opens that head (the view wires the events).

import type { MetricSeries } from "./api";
import { VIRIDIS, cssColor } from "../../draw/colormap";
import { ColorBar } from "../../draw/legend";
import { tokenColor } from "../../shell/theme";
import { canvas, panel, sizeCanvas, type Cell, type Shown } from "./layout";
import { paintShapes, type VectorCanvas, type VectorShape } from "../../export/vector";

export class GridPanel {
  readonly canvas = canvas("evo-grid", "evo-grid");
  readonly el: HTMLDivElement;
  private readonly title: HTMLHeadingElement;
  private readonly legend = document.createElement("div");
  private readonly bar = new ColorBar("evo-grid-colorbar");
  private geom = { x0: 0, y0: 0, cell: 0 };

  constructor() {
    this.legend.className = "evo-note";
    const row = document.createElement("div");
    row.className = "evo-with-bar";
    row.append(this.canvas, this.bar.el);
    [this.el, this.title] = panel("", row, this.legend);
  }

  draw(s: Shown): void {
    const m = s.m;
    const { L, H } = m;
    const cell = Math.max(14, Math.min(34, Math.floor(420 / Math.max(H, 1))));
    const x0 = 40;
    const y0 = 30;
    const ctx = sizeCanvas(this.canvas, x0 + H * cell + 4, y0 + L * cell + 4);
    this.geom = { x0, y0, cell };
    this.canvas.dataset["geom"] = JSON.stringify(this.geom); // where the cells are (tests click them)
    const step = m.steps[s.index] as number;
    this.title.textContent = `${s.label} at step ${step}`;
    const { lo, hi } = s.range;
    this.bar.set({ map: VIRIDIS, lo, hi, title: s.label }, L * cell);
    this.legend.textContent = "grey = undefined for that head · click a head to open it in the head view";
    if (!ctx) return;
    const v = s.values;
    // Drawn from vector shapes, which the SVG/PDF exports take as they are (labels stay text there).
    const out: VectorShape[] = [];
    const fg = tokenColor("--tba-muted");
    const label = (t: string, x: number, y: number, align: "right" | "center"): void => {
      out.push({ text: t, at: [x, y], font: "11px sans-serif", align, color: fg, alpha: 1 });
    };
    for (let l = 0; l < L; l++) label(`L${s.names.layer(l)}`, x0 - 6, y0 + l * cell + cell / 2, "right");
    label("head →", x0 + (H * cell) / 2, 7, "center");
    const every = Math.ceil(14 / cell);
    for (let h = 0; h < H; h += every) label(`${s.names.head(0, h)}`, x0 + h * cell + cell / 2, y0 - 8, "center");
    const undefinedColor = tokenColor("--tba-undefined");
    for (let l = 0; l < L; l++) {
      for (let h = 0; h < H; h++) {
        const x = v[(s.index * L + l) * H + h] as number;
        const color = Number.isFinite(x) ? cssColor(VIRIDIS, ((x - lo) / (hi - lo)) * 255) : undefinedColor;
        out.push({ rect: [x0 + h * cell, y0 + l * cell, cell - 1, cell - 1], color, alpha: 1 });
      }
    }
    if (s.hover) {
      const [ax, ay] = [x0 + s.hover.head * cell - 1, y0 + s.hover.layer * cell - 1];
      const [bx, by] = [ax + cell + 1, ay + cell + 1];
      out.push({
        path: [ax, ay, bx, ay, bx, by, ax, by, ax, ay],
        color: tokenColor("--tba-cursor"),
        alpha: 1,
        width: 2,
      });
    }
    paintShapes(ctx, out);
    (this.canvas as VectorCanvas).tbaVector = () => out;
  }

  /** The head under the mouse, as last drawn. */
  cellAt(e: MouseEvent, m: MetricSeries | null): Cell | null {
    if (!m) return null;
    const r = this.canvas.getBoundingClientRect();
    const { x0, y0, cell } = this.geom;
    const head = Math.floor((e.clientX - r.left - x0) / cell);
    const layer = Math.floor((e.clientY - r.top - y0) / cell);
    return layer >= 0 && layer < m.L && head >= 0 && head < m.H ? { layer, head } : null;
  }
}
