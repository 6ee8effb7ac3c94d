// The head view's canvas covers only a window of rows around the screen: rasterising long lines dominates the
// paint (software canvas: ~25 µs per line spanning a 512-token view) and its cost grows with the canvas height.
// The token columns are ordinary DOM and scroll natively; when the page scrolls out of the window the canvas
// moves and the kept paths are re-stroked. Views shorter than a few screens use one canvas for everything.
// It also keeps a copy of the un-hovered picture, so leaving a token restores it with one drawImage.

export class CanvasWindow {
  readonly canvas = document.createElement("canvas");
  readonly ctx: CanvasRenderingContext2D;
  // Copy of the full (un-hovered) picture.
  private readonly base = document.createElement("canvas");
  /** The canvas shows rows [top, top + height) of the view, in CSS px. */
  top = 0;
  height = 0;
  private dpr = 1;
  /** Whether `base` holds the picture now on the canvas without hover. */
  baseValid = false;

  constructor(id: string) {
    this.canvas.id = id;
    const ctx = this.canvas.getContext("2d");
    if (!ctx) throw new Error("this browser has no 2D canvas");
    this.ctx = ctx;
  }

  /** The view's layout changed: the canvas is resized at the next place(). */
  setWidth(width: number): void {
    this.canvas.style.width = `${width}px`;
    this.height = -1;
  }

  /**
   * Moves the canvas over the visible rows of `root` (a view `width` × `viewHeight` px) plus half a screen each
   * side; false if it already covers them.
   */
  place(root: HTMLElement, width: number, viewHeight: number, force: boolean): boolean {
    const [top, bottom] = visibleRows(root, viewHeight);
    if (!force && top >= this.top && bottom <= this.top + this.height) return false;
    const vh = window.innerHeight || 800;
    let winTop = 0;
    let winH = viewHeight;
    if (viewHeight > Math.max(2400, 3 * vh)) {
      winTop = Math.max(0, Math.floor(top - vh / 2));
      winH = Math.min(viewHeight, Math.ceil(Math.max(bottom, top + vh) + vh / 2)) - winTop;
    }
    // Stay under Chromium's 32767 px canvas side at high DPR.
    const dpr = Math.max(1, Math.min(window.devicePixelRatio || 1, 32767 / Math.max(1, winH)));
    if (winH !== this.height || dpr !== this.dpr) {
      this.canvas.width = Math.round(width * dpr);
      this.canvas.height = Math.round(winH * dpr);
      this.canvas.style.height = `${winH}px`;
    }
    this.top = winTop;
    this.height = winH;
    this.dpr = dpr;
    this.canvas.style.top = `${winTop}px`;
    // Draw in view coordinates; the canvas bounds clip everything outside the window for free.
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, -winTop * dpr);
    this.baseValid = false;
    return true;
  }

  /** Clears the window (view coordinates). */
  clear(width: number): void {
    this.ctx.clearRect(0, this.top, width, this.height);
  }

  /**
   * Copies the full (un-hovered) picture so leaving a token restores it with one drawImage. Taken lazily, when a
   * hover starts, not after every paint: the copy would otherwise add ~30 % to each paint and step change.
   */
  snapshot(): void {
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

  /** Puts the snapshot back (only valid while `baseValid`). */
  restore(): void {
    this.ctx.save();
    this.ctx.setTransform(1, 0, 0, 1, 0, 0);
    this.ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.ctx.drawImage(this.base, 0, 0);
    this.ctx.restore();
  }
}

/** Rows [top, bottom) of the view that are on screen (empty when scrolled away or hidden). */
function visibleRows(root: HTMLElement, height: number): [number, number] {
  const r = root.getBoundingClientRect();
  const vh = window.innerHeight || 800;
  const top = Math.min(height, Math.max(0, -r.top));
  return [top, Math.max(top, Math.min(height, vh - r.top))];
}
