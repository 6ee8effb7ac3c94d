// A token column of which only the rows near the screen exist in the DOM: 4,096 tokens would be 8,192 elements
// (two columns) to lay out on every step change. The column keeps its full height, so the page scrolls natively;
// rows are (re)built when the visible range leaves the built one. Search marks rows as they are built.

import { displayText } from "../tokens";
import type { Side } from "./paths";

/** Rows built beyond each edge of the visible range (a fast scroll shows no empty rows for a frame or two). */
const MARGIN = 60;

export class VirtualColumn {
  readonly el = document.createElement("div");
  private tokens: string[] = [];
  private rowH = 12;
  private first = 0;
  private last = -1;
  /** Lower-cased search text: rows containing it get `.match`. */
  search = "";
  /** The hovered / locked row, re-marked when rebuilt. */
  marked: { index: number; locked: boolean } | null = null;

  constructor(readonly side: Side) {
    this.el.className = `token-col ${side} virtual`;
  }

  set(tokens: string[], rowH: number, x: number, w: number): void {
    this.tokens = tokens;
    this.rowH = rowH;
    this.el.style.left = `${x}px`;
    this.el.style.width = `${w}px`;
    this.el.style.height = `${tokens.length * rowH}px`;
    this.first = 0;
    this.last = -1;
    this.el.replaceChildren();
  }

  /** Builds the rows covering view px [top, bottom) when they are not built yet; true when it rebuilt. */
  update(top: number, bottom: number, force = false): boolean {
    const a = Math.max(0, Math.floor(top / this.rowH));
    const b = Math.min(this.tokens.length - 1, Math.ceil(bottom / this.rowH));
    if (!force && a >= this.first && b <= this.last) return false;
    this.build(Math.max(0, a - MARGIN), Math.min(this.tokens.length - 1, b + MARGIN));
    return true;
  }

  /** The row element of token `i`, building the rows around it first (search jumps, hover from outside). */
  ensure(i: number): HTMLElement | null {
    if (i < this.first || i > this.last)
      this.build(Math.max(0, i - MARGIN), Math.min(this.tokens.length - 1, i + MARGIN));
    return this.row(i);
  }

  row(i: number): HTMLElement | null {
    if (i < this.first || i > this.last) return null;
    return (this.el.children[i - this.first] as HTMLElement | undefined) ?? null;
  }

  /** Token positions containing `q` (lower case), ascending. */
  matches(q: string): number[] {
    if (!q) return [];
    const out: number[] = [];
    this.tokens.forEach((t, i) => {
      if (t.toLowerCase().includes(q)) out.push(i);
    });
    return out;
  }

  /** Re-marks the built rows after the search text changed. */
  remark(): void {
    for (let i = this.first; i <= this.last; i++) this.mark(this.row(i), i);
  }

  private mark(el: HTMLElement | null, i: number): void {
    if (!el) return;
    el.classList.toggle("match", this.search !== "" && (this.tokens[i] ?? "").toLowerCase().includes(this.search));
    const m = this.marked;
    el.classList.toggle("hovered", !!m && m.index === i);
    el.classList.toggle("locked", !!m && m.index === i && m.locked);
  }

  private build(a: number, b: number): void {
    const frag = document.createDocumentFragment();
    const kind = this.side === "left" ? "query" : "key";
    for (let i = a; i <= b; i++) {
      const t = this.tokens[i] ?? "";
      const el = document.createElement("div");
      el.className = `token ${this.side}`;
      el.dataset["index"] = String(i);
      el.style.top = `${i * this.rowH}px`;
      el.textContent = displayText(t); // untrusted: text only
      el.title = `${kind} ${i}: ${t}`;
      this.mark(el, i);
      frag.appendChild(el);
    }
    this.first = a;
    this.last = b;
    this.el.replaceChildren(frag);
  }
}
