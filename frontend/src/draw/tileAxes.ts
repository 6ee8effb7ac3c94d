// Axes and tooltip of the tile map (tileMap.ts): position ticks for the visible window along the top (keys) and
// down the side (queries), and each token's label once a cell is wide enough to read one (≥ 10 px). DOM text, so
// the export writes it as text; token strings are untrusted and set with textContent only.

import { fillTicks, rangeTicks } from "./heatmapAxes";
import { displayText } from "./tokens";

const MIN_LABEL_PX = 10;

interface Shape {
  Q: number;
  K: number;
  left: string[];
  right: string[];
}

interface Win {
  q0: number;
  q1: number;
  k0: number;
  k1: number;
}

export interface CellInfo {
  level: number;
  weight: number;
  q0: number;
  q1: number;
  k0: number;
  k1: number;
}

export class TileAxes {
  readonly top = document.createElement("div");
  readonly side = document.createElement("div");
  readonly tip = document.createElement("div");
  private readonly xTicks = document.createElement("div");
  private readonly yTicks = document.createElement("div");
  private readonly kLabels = document.createElement("div");
  private readonly qLabels = document.createElement("div");

  constructor(private readonly canvas: HTMLCanvasElement) {
    this.top.className = "hm-top tm-top";
    this.side.className = "hm-side tm-side";
    this.xTicks.className = "hm-xaxis tm-ticks";
    this.yTicks.className = "hm-yaxis tm-ticks";
    this.kLabels.className = "hm-klabels tm-labels";
    this.qLabels.className = "hm-qlabels tm-labels";
    this.tip.className = "hm-tip";
    this.top.append(this.kLabels, this.xTicks);
    this.side.append(this.qLabels, this.yTicks);
  }

  draw(src: Shape, w: Win, view: { x0: number; y0: number; s: number }, W: number, H: number): void {
    const { x0, y0, s } = view;
    this.xTicks.style.width = `${W}px`;
    this.kLabels.style.width = `${W}px`;
    this.yTicks.style.height = `${H}px`;
    this.qLabels.style.height = `${H}px`;
    ticks(this.xTicks, w.k0, w.k1, x0, s, Math.max(2, Math.floor(W / 70)), true, "key position →");
    ticks(this.yTicks, w.q0, w.q1, y0, s, Math.max(2, Math.floor(H / 50)), false, "query ↓");
    const readable = s >= MIN_LABEL_PX;
    this.kLabels.style.display = readable ? "" : "none";
    this.qLabels.style.display = readable ? "" : "none";
    this.top.dataset["labels"] = readable ? "1" : "0";
    if (readable) {
      labels(this.kLabels, src.right, w.k0, w.k1, x0, s, "key");
      labels(this.qLabels, src.left, w.q0, w.q1, y0, s, "query");
    }
  }

  showTip(e: MouseEvent, src: Shape, i: number, j: number, c: CellInfo | null): void {
    const what =
      c === null
        ? "loading…"
        : c.level === 0
          ? `weight ${c.weight.toPrecision(4)}`
          : `largest weight ${c.weight.toPrecision(4)} of queries ${c.q0}–${c.q1 - 1} × keys ${c.k0}–${c.k1 - 1}`;
    this.tip.textContent = `query ${i}: ${displayText(src.left[i] ?? "")}\nkey ${j}: ${displayText(src.right[j] ?? "")}\n${what}`;
    this.tip.style.display = "block";
    this.tip.style.left = `${e.clientX + 14}px`;
    this.tip.style.top = `${e.clientY + 14}px`;
    this.canvas.dataset["tipQuery"] = String(i);
    this.canvas.dataset["tipKey"] = String(j);
  }

  hideTip(): void {
    this.tip.style.display = "none";
  }
}

/** Round positions in [a, b), placed at their cell's centre on screen. */
function ticks(el: HTMLElement, a: number, b: number, x0: number, s: number, n: number, h: boolean, title: string) {
  fillTicks(el, rangeTicks(a, b, n), (t) => (t + 0.5 - x0) * s, h, title);
}

function labels(el: HTMLElement, tokens: string[], a: number, b: number, x0: number, s: number, what: string) {
  const nodes: HTMLElement[] = [];
  for (let i = a; i < b; i++) {
    const d = document.createElement("div");
    d.className = "tba-token-label";
    d.textContent = displayText(tokens[i] ?? ""); // untrusted: text only
    d.title = `${what} ${i}: ${tokens[i] ?? ""}`;
    d.dataset["index"] = String(i);
    const at = `${(i + 0.5 - x0) * s}px`;
    if (what === "query") d.style.top = at;
    else d.style.left = at;
    nodes.push(d);
  }
  el.replaceChildren(...nodes);
}
