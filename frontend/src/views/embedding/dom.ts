// The embedding view's stylesheet (installed once, on first use) and its small DOM and number-format helpers.

import { page } from "../../shell/page";

let stylesInstalled = false;
export function installEmbeddingStyles(): void {
  if (stylesInstalled) return;
  stylesInstalled = true;
  const style = document.createElement("style");
  style.textContent = `
.emb-view { font: 13px system-ui, sans-serif; color: #222; }
.emb-controls { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; margin: 6px 0 8px; }
.emb-controls label { display: inline-flex; gap: 4px; align-items: center; }
.emb-status { color: #555; min-width: 14em; }
.emb-status progress { width: 90px; vertical-align: middle; margin-left: 6px; }
.emb-matrix { display: grid; gap: 4px; align-items: start; justify-content: start; }
.emb-cell { position: relative; border: 1px solid #ddd; border-radius: 3px; cursor: pointer; background: #fff; }
.emb-cell:hover { border-color: #555; }
.emb-cell canvas { display: block; }
.emb-cell-label { position: absolute; left: 3px; top: 1px; font-size: 10px; color: #444; pointer-events: none; }
.emb-cell-score { position: absolute; right: 3px; bottom: 1px; font-size: 10px; color: #333; pointer-events: none; }
.emb-row-label, .emb-col-label { font-size: 11px; color: #555; align-self: center; text-align: center; }
.emb-single { display: flex; gap: 14px; align-items: flex-start; }
.emb-single canvas { border: 1px solid #ddd; border-radius: 3px; cursor: crosshair; }
.emb-side { max-width: 360px; display: flex; flex-direction: column; gap: 8px; }
.emb-badge { font-size: 14px; padding: 6px 8px; border-radius: 4px; background: #f3f3f3; }
.emb-badge b { font-size: 16px; }
.emb-badge.good { background: #e3f4e6; } .emb-badge.poor { background: #fbe7ea; }
.emb-context { line-height: 1.7; }
.emb-context span { padding: 1px 2px; border-radius: 2px; }
.emb-context span.emb-hit { background: #ffe58a; font-weight: bold; }
.emb-note { white-space: pre-line; color: #444; padding: 12px 4px; }
.emb-tip { position: fixed; pointer-events: none; background: rgba(30,30,30,.92); color: #fff; padding: 4px 7px;
  border-radius: 4px; font-size: 12px; z-index: 10; display: none; max-width: 320px; }
.emb-legend { color: #555; font-size: 12px; }
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
