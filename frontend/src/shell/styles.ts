// All styling in one <style> element (inline styles are allowed by TensorBoard's CSP; no external CSS file
// to serve). Light and BertViz-like; dark through the same tokens.

import { HEATMAP_CSS } from "../draw/heatmapAxes";
import { LEGEND_CSS } from "../draw/legend";
import { page } from "./page";

// Every colour is a token (--tba-*) defined once per theme, so a view never hard-codes a light colour into dark
// mode; canvases read the same tokens (theme.ts tokenColor). Text tokens meet WCAG AA (4.5:1) on --tba-bg and
// --tba-surface in both themes (tests/browser/test_browser_theme.py measures it).
const TOKENS = `
body { --tba-bg: #ffffff; --tba-fg: #202124; --tba-muted: #5f6368; --tba-faint: #5f6368;
  --tba-border: #dadce0; --tba-control-bg: #ffffff; --tba-control-border: #9aa0a6; --tba-surface: #f1f3f4;
  --tba-panel: #f8f9fa; --tba-hover: rgba(32,33,36,0.08); --tba-accent: #c43e00; --tba-accent-line: #f57c00;
  --tba-accent-bg: #fff3e0; --tba-tip-bg: rgba(32,33,36,0.94); --tba-tip-fg: #ffffff;
  --tba-error-bg: #fce8e6; --tba-error-fg: #a50e0e; --tba-notice-bg: #fef7e0; --tba-notice-fg: #5c3d00;
  --tba-good-bg: #e6f4ea; --tba-poor-bg: #fce8e6; --tba-hit-bg: #fde293; --tba-undefined: #d5d7da;
  --tba-plot-bg: #f8f9fa; --tba-cursor: #d93025; --tba-line: #1a73e8; --tba-toolbar-bg: rgba(255,255,255,0.97); }
body.tba-dark { --tba-bg: #202124; --tba-fg: #e8eaed; --tba-muted: #bdc1c6; --tba-faint: #9aa0a6;
  --tba-border: #3c4043; --tba-control-bg: #303134; --tba-control-border: #80868b; --tba-surface: #303134;
  --tba-panel: #28292c; --tba-hover: rgba(232,234,237,0.12); --tba-accent: #ffb74d; --tba-accent-line: #ffb74d;
  --tba-accent-bg: #3d2b12; --tba-tip-bg: rgba(241,243,244,0.96); --tba-tip-fg: #202124;
  --tba-error-bg: #5c2b29; --tba-error-fg: #f6aea9; --tba-notice-bg: #3d3215; --tba-notice-fg: #fdd663;
  --tba-good-bg: #1e3a28; --tba-poor-bg: #4a2326; --tba-hit-bg: #6b5200; --tba-undefined: #4a4d51;
  --tba-plot-bg: #28292c; --tba-cursor: #f28b82; --tba-line: #8ab4f8; --tba-toolbar-bg: rgba(32,33,36,0.97); }
`;

const CSS = `
:root { color-scheme: light; }
body { margin: 0; background: var(--tba-bg); color: var(--tba-fg);
  font: 13px/1.4 Roboto, system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
body.tba-dark { color-scheme: dark; }
.tba-toolbar { position: sticky; top: 0; z-index: 5; background: var(--tba-toolbar-bg);
  border-bottom: 1px solid var(--tba-border); padding: 10px 16px 8px; display: flex; flex-wrap: wrap;
  align-items: center; gap: 10px 24px; }
.tba-tabs { display: flex; gap: 2px; flex-basis: 100%; border-bottom: 1px solid var(--tba-border); margin: -4px 0 2px; }
.tba-tab { border: none; border-bottom: 2px solid transparent; border-radius: 0; background: none; height: auto;
  padding: 6px 12px; color: var(--tba-muted); font-weight: 500; letter-spacing: 0.01em; }
.tba-tab:hover { background: var(--tba-hover); }
.tba-tab.active { color: var(--tba-accent); border-bottom-color: var(--tba-accent-line); }
.tba-parts { display: inline-flex; }
.tba-part { border-radius: 0; margin-left: -1px; }
.tba-part:first-child { border-radius: 4px 0 0 4px; }
.tba-part:last-child { border-radius: 0 4px 4px 0; }
.tba-part.active { background: var(--tba-accent-bg); border-color: var(--tba-accent-line); color: var(--tba-accent); }
.tba-viewbar { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 20px; margin-bottom: 10px; }
/* Sticky below the toolbar: the head toggles stay in reach while a long head view scrolls (top set by app.ts). */
.tba-viewbar.sticky { position: sticky; top: var(--tba-toolbar-h, 96px); z-index: 4; background: var(--tba-toolbar-bg);
  padding: 4px 0; }
.control { display: inline-flex; align-items: center; gap: 8px; }
.control > span:first-child { color: var(--tba-muted); font-weight: 500; }
/* Controls in TensorBoard's Material style: flat, 4 px radius, an accent focus ring. */
select, button, input { font: inherit; color: var(--tba-fg); background: var(--tba-control-bg);
  border: 1px solid var(--tba-control-border); border-radius: 4px; padding: 3px 8px; }
select, button { height: 28px; box-sizing: border-box; }
button { cursor: pointer; padding: 2px 10px; font-weight: 500; }
button:hover, select:hover { background-image: linear-gradient(var(--tba-hover), var(--tba-hover)); }
button:disabled { opacity: 0.6; cursor: default; }
select:focus-visible, button:focus-visible, input:focus-visible { outline: 2px solid var(--tba-accent-line);
  outline-offset: 1px; }
input[type=range], input[type=checkbox] { accent-color: var(--tba-accent-line); padding: 0; border: none;
  background: none; }
.step-control input { width: 240px; }
#reload-button { margin-left: auto; }
#step-label { font-variant-numeric: tabular-nums; min-width: 110px; color: var(--tba-muted); white-space: pre; }
#head-toggles { display: flex; flex-wrap: wrap; gap: 3px; max-width: 520px; }
.head-toggle { width: 16px; height: 16px; border-radius: 3px; cursor: pointer;
  background: var(--head-color); border: 1px solid var(--tba-border); box-sizing: border-box; }
.head-toggle.off { opacity: 0.22; }
.head-toggle:hover { outline: 2px solid var(--tba-muted); outline-offset: 1px; }
.tba-summary { padding: 6px 16px 0; color: var(--tba-muted); font-size: 12px; min-height: 17px; }
.tba-message { margin: 24px 16px; padding: 12px 14px; border-radius: 6px; background: var(--tba-surface);
  color: var(--tba-fg); white-space: pre-wrap; max-width: 760px; }
.tba-message.error { background: var(--tba-error-bg); color: var(--tba-error-fg); }
.tba-message:empty { display: none; }
.tba-notice { margin: 8px 16px 0; padding: 8px 12px; border-radius: 6px; background: var(--tba-notice-bg);
  color: var(--tba-notice-fg); white-space: pre-wrap; max-width: 760px; font-size: 12px; }
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
.token.hovered { background: var(--tba-hover); }
.token.locked { background: var(--tba-accent-bg); }
.token.match, .tba-token-label.match { outline: 2px solid var(--tba-accent-line); outline-offset: -2px; }
.model-view { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 16px 24px; }
.mv-grid { display: grid; gap: 6px; align-items: center; }
.mv-col-label, .mv-row-label { font-size: 12px; color: var(--tba-muted); white-space: nowrap; }
.mv-col-label { text-align: center; }
.mv-row-label { padding-right: 6px; text-align: right; }
.mv-thumb { width: var(--thumb-w); height: var(--thumb-h); cursor: pointer; border-radius: 3px;
  background: var(--tba-panel); border: 1px solid var(--tba-border); box-sizing: content-box; }
.mv-thumb:hover { border-color: var(--tba-muted); }
.mv-thumb.selected { border: 1px solid var(--tba-accent-line); box-shadow: 0 0 0 2px var(--tba-accent-line); }
.mv-thumb > canvas { width: 100%; height: 100%; display: block; }
.mv-detail { border: 1px solid var(--tba-border); border-radius: 6px; padding: 8px 10px; }
.mv-detail-bar { display: flex; align-items: center; gap: 10px; margin-bottom: 8px; }
.mv-detail-title { font-weight: 600; margin-right: auto; }
.tba-legend-line { font-size: 12px; color: var(--tba-muted); display: flex; align-items: center; gap: 12px;
  flex-wrap: wrap; margin: 2px 0 8px; }
.tba-export button { padding: 2px 8px; font-size: 12px; }
.tba-filter { display: inline-flex; align-items: center; gap: 3px; color: var(--tba-muted); font-size: 12px; }
#search-count { color: var(--tba-muted); font-size: 12px; min-width: 56px; }
.nv-info { color: var(--tba-muted); font-size: 12px; }
.nv-body { position: relative; }
.nv-body > canvas { position: absolute; left: 0; top: 0; pointer-events: none; }
.nv-header { position: absolute; left: 0; top: 0; right: 0; height: 34px; }
.nv-heading { position: absolute; top: 8px; font-size: 12px; font-weight: 600; color: var(--tba-muted);
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.nv-q .token { cursor: pointer; }
.heatmap { display: flex; flex-wrap: wrap; gap: 16px 28px; align-items: flex-start; }
.hm-col { display: flex; flex-direction: column; gap: 6px; }
.hm-title { font-size: 12px; color: var(--tba-muted); }
.hm-caption { font-size: 12px; color: var(--tba-faint); max-width: 560px; }
.hm-tip { position: fixed; display: none; z-index: 10; pointer-events: none; white-space: pre; font-size: 12px;
  background: var(--tba-tip-bg); color: var(--tba-tip-fg); padding: 5px 8px; border-radius: 4px; }
.diff-content { display: flex; flex-wrap: wrap; gap: 16px 32px; align-items: flex-start; }
.diff-side { display: flex; flex-direction: column; gap: 6px; }
.diff-rank { border-collapse: collapse; font-size: 12px; font-variant-numeric: tabular-nums; }
.diff-rank th { text-align: left; color: var(--tba-muted); font-weight: 500; padding: 2px 8px; }
.diff-rank td { padding: 2px 8px; }
.diff-rank tr[data-layer] { cursor: pointer; }
.diff-rank tr[data-layer]:hover { background: var(--tba-hover); }
.diff-rank tr.current { background: var(--tba-accent-bg); }
.diff-bar { height: 8px; background: var(--tba-muted); border-radius: 2px; }
`;

export function installStyles(): void {
  const style = document.createElement("style");
  style.textContent = TOKENS + CSS + LEGEND_CSS + HEATMAP_CSS;
  page().styles.appendChild(style);
}
