// The embedding view's stylesheet (installed once, on first use) and its small DOM and number-format helpers.

import { page } from "../../shell/page";

let stylesInstalled = false;
export function installEmbeddingStyles(): void {
  if (stylesInstalled) return;
  stylesInstalled = true;
  const style = document.createElement("style");
  // Colours are the shell's theme tokens (shell/styles.ts), so dark mode needs no rules of its own here.
  style.textContent = `
.emb-view { font: 13px Roboto, system-ui, sans-serif; color: var(--tba-fg); }
.emb-controls { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; margin: 6px 0 8px; }
.emb-controls label { display: inline-flex; gap: 4px; align-items: center; color: var(--tba-muted); }
.emb-status { color: var(--tba-muted); min-width: 14em; }
.emb-status progress { width: 90px; vertical-align: middle; margin-left: 6px; accent-color: var(--tba-accent-line); }
.emb-matrix { display: grid; gap: 4px; align-items: start; justify-content: start; }
.emb-cell { position: relative; border: 1px solid var(--tba-border); border-radius: 3px; cursor: pointer;
  background: var(--tba-panel); }
.emb-cell:hover { border-color: var(--tba-muted); }
.emb-cell canvas { display: block; }
.emb-cell-label { position: absolute; left: 3px; top: 1px; font-size: 10px; color: var(--tba-muted); pointer-events: none; }
.emb-cell-score { position: absolute; right: 3px; bottom: 1px; font-size: 10px; color: var(--tba-fg); pointer-events: none; }
.emb-row-label, .emb-col-label { font-size: 11px; color: var(--tba-muted); align-self: center; text-align: center; }
.emb-single { display: flex; gap: 14px; align-items: flex-start; }
.emb-single canvas { border: 1px solid var(--tba-border); border-radius: 3px; cursor: crosshair; background: var(--tba-panel); }
.emb-side { max-width: 360px; display: flex; flex-direction: column; gap: 8px; }
.emb-badge { font-size: 14px; padding: 6px 8px; border-radius: 4px; background: var(--tba-surface); }
.emb-badge:empty { display: none; }
.emb-badge b { font-size: 16px; }
.emb-badge.good { background: var(--tba-good-bg); } .emb-badge.poor { background: var(--tba-poor-bg); }
.emb-context { line-height: 1.7; }
.emb-context span { padding: 1px 2px; border-radius: 2px; }
.emb-context span.emb-hit { background: var(--tba-hit-bg); font-weight: bold; }
.emb-note { white-space: pre-line; color: var(--tba-muted); padding: 12px 4px; }
.emb-note-line { color: var(--tba-muted); font-size: 12px; margin: 0 0 6px; }
.emb-note-line:empty { display: none; }
.emb-tip { position: fixed; pointer-events: none; background: var(--tba-tip-bg); color: var(--tba-tip-fg); padding: 4px 7px;
  border-radius: 4px; font-size: 12px; z-index: 10; display: none; max-width: 320px; }
.emb-legend { color: var(--tba-muted); font-size: 12px; }
.emb-keys { font-size: 12px; }
.emb-keys div { display: flex; gap: 6px; align-items: center; }
.emb-keys span.bar { display: inline-block; height: 8px; background: rgb(227,55,143); border-radius: 2px; }
.emb-legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin: 0 3px 0 8px; }
`;
  page().styles.appendChild(style);
}

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  cls?: string,
  text?: string,
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

export function fmt(x: number | null | undefined): string {
  return x === null || x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(2);
}
