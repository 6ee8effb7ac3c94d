// All styling in one <style> element (inline styles are allowed by TensorBoard's CSP; no external CSS file
// to serve). Light and BertViz-like.

import { page } from "./page";

const CSS = `
:root { color-scheme: light; }
body { margin: 0; background: #fff; color: #212121;
  font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
.tba-toolbar { position: sticky; top: 0; z-index: 5; background: rgba(255,255,255,0.96);
  border-bottom: 1px solid #e0e0e0; padding: 10px 16px 8px; display: flex; flex-wrap: wrap;
  align-items: center; gap: 10px 24px; }
.tba-tabs { display: flex; gap: 2px; flex-basis: 100%; border-bottom: 1px solid #e0e0e0; margin: -4px 0 2px; }
.tba-tab { border: none; border-bottom: 2px solid transparent; border-radius: 0; background: none;
  padding: 4px 12px; color: #616161; font-weight: 500; }
.tba-tab.active { color: #e65100; border-bottom-color: #f57c00; }
.tba-parts { display: inline-flex; }
.tba-part { border-radius: 0; margin-left: -1px; }
.tba-part:first-child { border-radius: 4px 0 0 4px; }
.tba-part:last-child { border-radius: 0 4px 4px 0; }
.tba-part.active { background: #fff3e0; border-color: #f57c00; color: #e65100; }
.tba-viewbar { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 20px; margin-bottom: 10px; }
.control { display: inline-flex; align-items: center; gap: 8px; }
.control > span:first-child { color: #616161; font-weight: 500; }
select, button { font: inherit; color: inherit; background: #fff; border: 1px solid #c8c8c8;
  border-radius: 4px; padding: 3px 6px; }
button { cursor: pointer; padding: 2px 8px; }
button:hover, select:hover { border-color: #888; }
.step-control input { width: 240px; }
#reload-button { margin-left: auto; }
#step-label { font-variant-numeric: tabular-nums; min-width: 110px; color: #424242; white-space: pre; }
#head-toggles { display: flex; flex-wrap: wrap; gap: 3px; max-width: 520px; }
.head-toggle { width: 16px; height: 16px; border-radius: 3px; cursor: pointer;
  background: var(--head-color); border: 1px solid rgba(0,0,0,0.15); box-sizing: border-box; }
.head-toggle.off { opacity: 0.22; }
.head-toggle:hover { outline: 2px solid #9e9e9e; outline-offset: 1px; }
.tba-summary { padding: 6px 16px 0; color: #757575; font-size: 12px; }
.tba-message { margin: 24px 16px; padding: 12px 14px; border-radius: 6px; background: #f5f5f5;
  color: #424242; white-space: pre-wrap; max-width: 760px; }
.tba-message.error { background: #fdecea; color: #b71c1c; }
.tba-message:empty { display: none; }
.tba-notice { margin: 8px 16px 0; padding: 8px 12px; border-radius: 6px; background: #fff8e1; color: #6d4c00;
  white-space: pre-wrap; max-width: 760px; font-size: 12px; }
.tba-notice:empty { display: none; }
.tba-main { padding: 12px 16px 40px; }
.head-view { position: relative; }
/* the line canvas of every HeadView (head tab, model view detail) */
.head-view > canvas { position: absolute; left: 0; top: 0; pointer-events: none; }
.token-col { position: absolute; top: 0; }
.token { position: absolute; left: 0; right: 0; height: var(--row-h); line-height: var(--row-h);
  font-size: var(--font-px); padding: 0 7px; box-sizing: border-box; white-space: pre; overflow: hidden;
  text-overflow: ellipsis; cursor: default; border-radius: 2px;
  unicode-bidi: isolate; /* a right-to-left override inside one token must not reorder its neighbours */ }
.token.left { text-align: right; }
.token.hovered { background: rgba(0,0,0,0.12); }
.model-view { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 16px 24px; }
.mv-grid { display: grid; gap: 6px; align-items: center; }
.mv-col-label { font-size: 12px; color: #616161; text-align: center; white-space: nowrap; }
.mv-row-label { font-size: 12px; color: #616161; padding-right: 6px; white-space: nowrap; text-align: right; }
.mv-thumb { width: var(--thumb-w); height: var(--thumb-h); cursor: pointer; border-radius: 3px;
  background: #fafafa; border: 1px solid #e0e0e0; box-sizing: content-box; }
.mv-thumb:hover { border-color: #9e9e9e; }
.mv-thumb.selected { border: 1px solid var(--layer-color); box-shadow: 0 0 0 2px var(--layer-color); }
.mv-thumb > canvas { width: 100%; height: 100%; display: block; }
.mv-detail { border: 1px solid #e0e0e0; border-radius: 6px; padding: 8px 10px; }
.mv-detail-bar { display: flex; align-items: center; gap: 10px; margin-bottom: 8px; }
.mv-detail-title { font-weight: 600; margin-right: auto; }
.token.match, .tba-token-label.match { outline: 2px solid #f57c00; outline-offset: -2px; }
.tba-export button { padding: 2px 6px; font-size: 12px; }
.tba-filter { display: inline-flex; align-items: center; gap: 3px; color: #757575; font-size: 12px; }
#search-count { color: #757575; font-size: 12px; min-width: 56px; }
.token.locked { background: rgba(245,124,0,0.25); }
.nv-info { color: #616161; font-size: 12px; }
.nv-body { position: relative; }
.nv-body > canvas { position: absolute; left: 0; top: 0; pointer-events: none; }
.nv-header { position: absolute; left: 0; top: 0; right: 0; height: 34px; }
.nv-heading { position: absolute; top: 8px; font-size: 12px; font-weight: 600; color: #424242; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; }
.nv-q .token { cursor: pointer; }
.heatmap { display: flex; flex-wrap: wrap; gap: 16px 28px; align-items: flex-start; }
.hm-col { display: flex; flex-direction: column; gap: 6px; }
.hm-title { font-size: 12px; color: #616161; }
.hm-caption { font-size: 12px; color: #757575; max-width: 560px; }
.hm-ov-wrap { position: relative; line-height: 0; }
.hm-overview, .hm-detail { image-rendering: pixelated; cursor: crosshair; }
.hm-sel { position: absolute; border: 2px solid #f57c00; box-sizing: border-box; pointer-events: none; }
.hm-det-wrap { display: grid; grid-template-columns: auto auto; grid-template-rows: auto auto; }
.hm-det-wrap > .hm-klabels { grid-column: 2; grid-row: 1; display: flex; }
.hm-det-wrap > .hm-qlabels { grid-column: 1; grid-row: 2; }
.hm-det-wrap > .hm-detail { grid-column: 2; grid-row: 2; }
.hm-klabels > div { width: var(--cell); writing-mode: vertical-rl; transform: rotate(180deg);
  font-size: min(11px, calc(var(--cell) - 1px));
  white-space: pre; overflow: hidden; text-overflow: ellipsis; max-height: 90px; line-height: var(--cell); }
.hm-qlabels > div { height: var(--cell); line-height: var(--cell); font-size: min(11px, calc(var(--cell) - 1px));
  text-align: right;
  padding-right: 4px; white-space: pre; overflow: hidden; text-overflow: ellipsis; max-width: 140px; }
.hm-tip { position: fixed; display: none; z-index: 10; pointer-events: none; white-space: pre; font-size: 12px;
  background: rgba(33,33,33,0.92); color: #fff; padding: 5px 8px; border-radius: 4px; }
.diff-content { display: flex; flex-wrap: wrap; gap: 16px 32px; align-items: flex-start; }
.diff-side { display: flex; flex-direction: column; gap: 6px; }
.diff-rank { border-collapse: collapse; font-size: 12px; font-variant-numeric: tabular-nums; }
.diff-rank th { text-align: left; color: #616161; font-weight: 500; padding: 2px 8px; }
.diff-rank td { padding: 2px 8px; }
.diff-rank tr[data-layer] { cursor: pointer; }
.diff-rank tr[data-layer]:hover { background: rgba(0,0,0,0.06); }
.diff-rank tr.current { background: rgba(245,124,0,0.15); }
.diff-bar { height: 8px; background: #e08214; border-radius: 2px; }
/* Dark mode: follows TensorBoard's (parent body.dark-mode), else the OS preference (theme.ts). */
body.tba-dark { color-scheme: dark; background: #202124; color: #e8eaed; }
body.tba-dark .tba-toolbar { background: rgba(32,33,36,0.96); border-bottom-color: #3c4043; }
body.tba-dark .tba-tabs { border-bottom-color: #3c4043; }
body.tba-dark .tba-tab, body.tba-dark .control > span:first-child, body.tba-dark .mv-col-label,
body.tba-dark .mv-row-label, body.tba-dark .hm-title, body.tba-dark .nv-info,
body.tba-dark .nv-heading { color: #bdc1c6; }
body.tba-dark .tba-tab { background: none; }
body.tba-dark .tba-tab.active { color: #ffb74d; border-bottom-color: #ffb74d; }
body.tba-dark select, body.tba-dark button, body.tba-dark input { background: #303134; color: #e8eaed;
  border-color: #5f6368; }
body.tba-dark #step-label, body.tba-dark .tba-summary, body.tba-dark .hm-caption { color: #9aa0a6; }
body.tba-dark .tba-message { background: #303134; color: #e8eaed; }
body.tba-dark .tba-message.error { background: #5c2b29; color: #f6aea9; }
body.tba-dark .token.hovered { background: rgba(255,255,255,0.16); }
body.tba-dark .mv-thumb { background: #28292c; border-color: #3c4043; }
body.tba-dark .mv-detail { border-color: #3c4043; }
body.tba-dark .tba-part.active { background: #3d2b12; color: #ffb74d; border-color: #ffb74d; }
body.tba-dark .diff-rank th { color: #9aa0a6; }
`;

export function installStyles(): void {
  const style = document.createElement("style");
  style.textContent = CSS;
  page().styles.appendChild(style);
}
