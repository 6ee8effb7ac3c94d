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
  color: string;
  alpha: number;
  width?: number;
  /** Stroke dash pattern (lines and polylines). */
  dash?: number[];
}

/** Draws shapes on a 2-D context (the canvas itself, and the PNG export at its own scale). */
export function paintShapes(ctx: CanvasRenderingContext2D, shapes: VectorShape[]): void {
  for (const v of shapes) {
    ctx.globalAlpha = v.alpha;
    if (v.line || v.path) {
      const p = v.path ?? (v.line as number[]);
      ctx.strokeStyle = v.color;
      ctx.lineWidth = v.width ?? 1;
      ctx.setLineDash(v.dash ?? []);
      ctx.beginPath();
      for (let i = 0; i + 1 < p.length; i += 2) {
        if (i === 0) ctx.moveTo(p[0] as number, p[1] as number);
        else ctx.lineTo(p[i] as number, p[i + 1] as number);
      }
      ctx.stroke();
      ctx.setLineDash([]);
    } else if (v.rect) {
      const [x, y, w, h] = v.rect;
      ctx.fillStyle = v.color;
      ctx.fillRect(x, y, w, h);
    } else if (v.text !== undefined && v.at) {
      ctx.font = v.font ?? "10px sans-serif";
      ctx.fillStyle = v.color;
      ctx.textAlign = v.align ?? "left";
      ctx.textBaseline = "middle";
      ctx.fillText(v.text, v.at[0], v.at[1]);
    }
  }
  ctx.globalAlpha = 1;
}

/** The width of a text shape as the browser lays it out (the SVG and PDF exports align it by its box). */
let measurer: CanvasRenderingContext2D | null = null;
export function textWidth(v: VectorShape): number {
  measurer ??= document.createElement("canvas").getContext("2d") as CanvasRenderingContext2D;
  measurer.font = v.font ?? "10px sans-serif";
  return measurer.measureText(v.text ?? "").width;
}
