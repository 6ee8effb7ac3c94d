// Axes of the heatmap panel: token-position ticks along the overview, and the detail's token labels, thinned to
// every n-th token when cells are too small for one label each (so a zoomed window is labelled at any zoom). All
// DOM text (the export writes it as text); token strings are untrusted, set with textContent only.

import { niceTicks } from "./legend";
import { displayText } from "./tokens";

const MIN_LABEL_PX = 10; // spacing below which labels overlap (9 px text)

/** Integer tick positions in [a, b): round numbers, at most about `count` of them. */
export function rangeTicks(a: number, b: number, count = 6): number[] {
  if (b - a <= 1) return [a];
  return niceTicks(a, b - 1, count).filter((v) => Number.isInteger(v) && v >= a && v < b);
}

/** Integer tick positions in [0, n). */
export function positionTicks(n: number, count = 6): number[] {
  return rangeTicks(0, n, count);
}

/** Fills an axis element with its title and ticks at `at(t)` px: `horizontal` along the top, else down the side. */
export function fillTicks(
  el: HTMLElement,
  ticks: number[],
  at: (t: number) => number,
  horizontal: boolean,
  title: string,
) {
  const nodes: HTMLElement[] = ticks.map((t) => {
    const d = document.createElement("div");
    d.className = "hm-tick";
    d.textContent = String(t);
    if (horizontal) d.style.left = `${at(t)}px`;
    else d.style.top = `${at(t)}px`;
    return d;
  });
  const name = document.createElement("div");
  name.className = "hm-axis-title";
  name.textContent = title;
  el.replaceChildren(name, ...nodes);
}

/** Fills an axis element with position ticks: `horizontal` along the top (keys), else down the side (queries). */
export function fillPositionAxis(el: HTMLElement, n: number, px: number, horizontal: boolean, title: string): void {
  const ticks = positionTicks(n, Math.max(2, Math.floor(px / 60)));
  fillTicks(el, ticks, (t) => ((t + 0.5) / n) * px, horizontal, title);
  if (horizontal) el.style.width = `${px}px`;
  else el.style.height = `${px}px`;
}

/** Every n-th token label of the detail window [a, b), at `cell` px per token. */
export function fillTokenLabels(
  el: HTMLElement,
  tokens: string[],
  a: number,
  b: number,
  cell: number,
  what: "query" | "key",
): void {
  const every = Math.max(1, Math.ceil(MIN_LABEL_PX / cell));
  const font = Math.max(9, Math.min(11, Math.floor(cell * every) - 2));
  el.style.setProperty("--label-px", `${font}px`);
  el.dataset["every"] = String(every);
  const nodes: HTMLElement[] = [];
  for (let i = a; i < b; i++) {
    if ((i - a) % every !== 0) continue;
    const d = document.createElement("div");
    d.className = "tba-token-label";
    d.textContent = displayText(tokens[i] ?? ""); // untrusted: text only
    d.title = `${what} ${i}: ${tokens[i] ?? ""}`;
    d.dataset["index"] = String(i);
    const at = `${(i - a + 0.5) * cell}px`;
    if (what === "query") d.style.top = at;
    else d.style.left = at;
    nodes.push(d);
  }
  el.replaceChildren(...nodes);
  if (what === "query") el.style.height = `${(b - a) * cell}px`;
  else el.style.width = `${(b - a) * cell}px`;
}

export const HEATMAP_CSS = `
.hm-frame { display: grid; grid-template-columns: auto auto auto; grid-template-rows: auto auto; gap: 4px 6px;
  align-items: start; }
.hm-frame > .hm-top { grid-column: 2; grid-row: 1; }
.hm-frame > .hm-side { grid-column: 1; grid-row: 2; }
.hm-frame > .hm-plot { grid-column: 2; grid-row: 2; }
.hm-frame > .tba-colorbar { grid-column: 3; grid-row: 1 / span 2; }
.hm-ov-wrap { position: relative; line-height: 0; }
.hm-overview, .hm-detail { image-rendering: pixelated; cursor: crosshair; display: block; }
.hm-sel { position: absolute; border: 2px solid var(--tba-accent-line); box-sizing: border-box; pointer-events: none; }
.hm-xaxis { position: relative; height: 30px; font-size: 10px; color: var(--tba-muted); }
.hm-yaxis { position: relative; width: 44px; font-size: 10px; color: var(--tba-muted); }
.hm-xaxis .hm-tick { position: absolute; bottom: 0; transform: translateX(-50%); font-variant-numeric: tabular-nums; }
.hm-xaxis .hm-tick::after { content: ""; display: block; width: 1px; height: 4px; margin: 1px auto 0;
  background: currentColor; }
.hm-yaxis .hm-tick { position: absolute; right: 0; transform: translateY(-50%); font-variant-numeric: tabular-nums; }
.hm-yaxis .hm-tick::after { content: ""; display: inline-block; width: 4px; height: 1px; margin-left: 2px;
  vertical-align: middle; background: currentColor; }
.hm-axis-title { position: absolute; font-size: 11px; color: var(--tba-muted); white-space: nowrap; }
.hm-xaxis .hm-axis-title { top: 0; left: 0; }
.hm-yaxis .hm-axis-title { left: 0; top: -30px; }
.hm-qlabels, .hm-klabels { position: relative; font-size: var(--label-px, 11px); }
.hm-qlabels { width: 140px; }
.hm-klabels { height: 90px; }
.hm-qlabels > div { position: absolute; right: 4px; transform: translateY(-50%); max-width: 136px; white-space: pre;
  overflow: hidden; text-overflow: ellipsis; line-height: 1.1; }
.hm-klabels > div { position: absolute; bottom: 2px; writing-mode: vertical-rl; transform: translateX(-50%) rotate(180deg);
  max-height: 88px; white-space: pre; overflow: hidden; text-overflow: ellipsis; line-height: 1.1; }
`;
