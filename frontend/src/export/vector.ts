// How a canvas offers vector shapes to the SVG export: a canvas with a `tbaVector` hook exports real <line>s and
// <rect>s (for papers) instead of an embedded bitmap. The head view's line canvases implement it.

export type VectorCanvas = HTMLCanvasElement & { tbaVector?: () => VectorShape[] | null };

export interface VectorShape {
  line?: [number, number, number, number];
  rect?: [number, number, number, number];
  color: string;
  alpha: number;
  width?: number;
}
