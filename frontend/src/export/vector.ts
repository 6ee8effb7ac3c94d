// How a canvas offers vector shapes to the SVG and PDF exports: a canvas with a `tbaVector` hook exports real lines,
// rectangles, polylines and text (for papers) instead of an embedded bitmap. The head view's line canvases, heatmap
// cells, colour bars and the evolution view's plots implement it; a canvas drawn *from* its shapes (paintShapes)
// exports exactly what is on screen.

export type VectorCanvas = HTMLCanvasElement & { tbaVector?: () => VectorShape[] | null };

export interface VectorShape {
  line?: [number, number, number, number];
  /** A filled rectangle [x, y, w, h]. */
  rect?: [number, number, number, number];
  /** A stroked polyline x0, y0, x1, y1, … */
  path?: number[];
  /** Text drawn at `at`, vertically centred, aligned as canvas textAlign does. */
  text?: string;
  at?: [number, number];
  font?: string;
  align?: "left" | "center" | "right";
  /** Text turned a quarter left about `at` (reads bottom to top, as axis labels under a matrix). */
  vertical?: boolean;
  color: string;
  alpha: number;
  width?: number;
  /** Stroke dash pattern (lines and polylines). */
  dash?: number[];
}

/** Draws shapes on a 2-D context (the canvas itself, and the PNG export at its own scale). Styles are set only when
 * they change: assigning a colour or font string makes the context parse it again, thousands of times a frame. */
export function paintShapes(ctx: CanvasRenderingContext2D, shapes: VectorShape[]): void {
  let alpha = -1;
  let stroke = "";
  let fill = "";
  let width = -1;
  let dash = "";
  let font = "";
  let align = "";
  ctx.textBaseline = "middle";
  for (const v of shapes) {
    if (v.alpha !== alpha) ctx.globalAlpha = alpha = v.alpha;
    if (v.line || v.path) {
      const p = v.path ?? (v.line as number[]);
      if (v.color !== stroke) ctx.strokeStyle = stroke = v.color;
      if ((v.width ?? 1) !== width) ctx.lineWidth = width = v.width ?? 1;
      const d = v.dash ? v.dash.join(",") : "";
      if (d !== dash) {
        ctx.setLineDash(v.dash ?? []);
        dash = d;
      }
      ctx.beginPath();
      ctx.moveTo(p[0] as number, p[1] as number);
      for (let i = 2; i + 1 < p.length; i += 2) ctx.lineTo(p[i] as number, p[i + 1] as number);
      ctx.stroke();
    } else if (v.rect) {
      if (v.color !== fill) ctx.fillStyle = fill = v.color;
      ctx.fillRect(v.rect[0], v.rect[1], v.rect[2], v.rect[3]);
    } else if (v.text !== undefined && v.at) {
      const f = v.font ?? "10px sans-serif";
      if (f !== font) ctx.font = font = f;
      if ((v.align ?? "left") !== align) ctx.textAlign = (align = v.align ?? "left") as CanvasTextAlign;
      if (v.color !== fill) ctx.fillStyle = fill = v.color;
      if (v.vertical) {
        ctx.save(); // restores the same font, fill and alignment: the cached values stay true
        ctx.translate(v.at[0], v.at[1]);
        ctx.rotate(-Math.PI / 2);
        ctx.fillText(v.text, 0, 0);
        ctx.restore();
      } else ctx.fillText(v.text, v.at[0], v.at[1]);
    }
  }
  ctx.setLineDash([]);
  ctx.globalAlpha = 1;
}

/** The width of a text shape as the browser lays it out (the SVG and PDF exports align it by its box). */
let measurer: CanvasRenderingContext2D | null = null;
export function textWidth(v: VectorShape): number {
  measurer ??= document.createElement("canvas").getContext("2d") as CanvasRenderingContext2D;
  measurer.font = v.font ?? "10px sans-serif";
  return measurer.measureText(v.text ?? "").width;
}
