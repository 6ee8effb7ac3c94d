// The neuron view's rows as the head view draws them at thousands of tokens: token columns with only the rows near
// the screen in the DOM (draw/headView/virtualRows.ts) and a canvas over a window of rows around the screen
// (draw/headView/window.ts), repainted when the page scrolls out of it. Two columns of 4,096 tokens were 8,192
// elements and a canvas of 4,096 rows (its pixel density cut to stay under 32,767 device pixels: blurry). Short
// views keep one canvas for everything. Search (controls/searchControl.ts) asks `tbaSearch` on the body, since most
// rows are not in the DOM, and jumps to a match off screen.

import { CanvasWindow } from "../../draw/headView/window";
import { onPageScroll } from "../../draw/headView/events";
import { VirtualColumn } from "../../draw/headView/virtualRows";
import type { SearchHook } from "../../draw/headView/sparse";
import type { Layout } from "./layout";

export class NeuronRows {
  readonly win = new CanvasWindow("neuron-canvas");
  readonly q = new VirtualColumn("left");
  readonly k = new VirtualColumn("right");
  private lay: Layout | null = null;
  private n = 0;
  private hits: { col: VirtualColumn; index: number }[] = [];
  private at = 0;

  /** `redraw` repaints every row of the canvas window (after it moved). */
  constructor(
    private readonly body: HTMLElement,
    private readonly redraw: () => void,
  ) {
    this.q.el.classList.add("nv-q");
    this.k.el.classList.add("nv-k");
    body.append(this.win.canvas, this.q.el, this.k.el);
    onPageScroll(
      () => !!this.lay && body.isConnected,
      () => {
        if (body.offsetParent !== null && this.sync(false)) this.redraw(); // hidden views wait for show()
      },
    );
    body.dataset["tbaSearch"] = "1";
    (body as HTMLElement & { tbaSearch?: SearchHook }).tbaSearch = (text, scroll, next) =>
      this.search(text, scroll, next);
  }

  /** New tokens or row geometry: the columns start empty and are built at the next sync(). */
  setTokens(left: string[], right: string[], lay: Layout): void {
    this.n = Math.max(left.length, right.length);
    for (const [col, tokens, x] of [
      [this.q, left, lay.x.qTok],
      [this.k, right, lay.x.kTok],
    ] as const) {
      col.set(tokens, lay.rowH, x, lay.tokW);
      col.el.style.top = `${lay.headerH}px`;
    }
  }

  /** The columns' widths changed (comparison on/off): the canvas is resized at the next sync(). */
  setLayout(lay: Layout): void {
    this.lay = lay;
    this.win.setWidth(lay.x.end);
  }

  /** Builds the rows on screen and moves the canvas window when needed; true when it moved (repaint it all). */
  sync(force: boolean): boolean {
    const lay = this.lay;
    if (!lay) return false;
    const r = this.body.getBoundingClientRect();
    const vh = window.innerHeight || 800;
    const rowsH = this.n * lay.rowH;
    const top = Math.max(0, -r.top - lay.headerH);
    const bottom = Math.min(rowsH, vh - r.top - lay.headerH);
    this.q.update(top, bottom, force);
    this.k.update(top, bottom, force);
    return this.win.place(this.body, lay.x.end, lay.headerH + rowsH, force);
  }

  /** Rows [r0, r1) the canvas window covers. */
  range(): [number, number] {
    const lay = this.lay;
    if (!lay) return [0, 0];
    const r0 = Math.max(0, Math.floor((this.win.top - lay.headerH) / lay.rowH));
    const r1 = Math.min(this.n, Math.ceil((this.win.top + this.win.height - lay.headerH) / lay.rowH));
    return [r0, Math.max(r0, r1)];
  }

  /** Marks query row i as hovered (and locked); null: none. */
  mark(i: number | null, locked: boolean): void {
    this.q.marked = i === null ? null : { index: i, locked };
    this.q.remark();
  }

  private search(text: string, scroll: boolean, next: boolean): number {
    const s = text.trim().toLowerCase();
    this.q.search = this.k.search = s;
    this.q.remark();
    this.k.remark();
    this.hits = [
      ...this.q.matches(s).map((index) => ({ col: this.q, index })),
      ...this.k.matches(s).map((index) => ({ col: this.k, index })),
    ];
    if (scroll && this.hits.length) {
      this.at = next ? (this.at + 1) % this.hits.length : 0;
      const hit = this.hits[this.at] as { col: VirtualColumn; index: number };
      hit.col.ensure(hit.index)?.scrollIntoView({ block: "center" });
      this.body.dataset["searchAt"] = `${hit.col === this.q ? "query" : "key"}:${hit.index}`;
      if (this.sync(false)) this.redraw();
    }
    return this.hits.length;
  }
}
