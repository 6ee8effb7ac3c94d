// All styling in one <style> element (inline styles are allowed by TensorBoard's CSP; no external CSS file
// to serve). Light and BertViz-like.

const CSS = `
:root { color-scheme: light; }
body { margin: 0; background: #fff; color: #212121;
  font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
.tba-toolbar { position: sticky; top: 0; z-index: 5; background: rgba(255,255,255,0.96);
  border-bottom: 1px solid #e0e0e0; padding: 10px 16px 8px; display: flex; flex-wrap: wrap;
  align-items: center; gap: 10px 24px; }
.control { display: inline-flex; align-items: center; gap: 8px; }
.control > span:first-child { color: #616161; font-weight: 500; }
select, button { font: inherit; color: inherit; background: #fff; border: 1px solid #c8c8c8;
  border-radius: 4px; padding: 3px 6px; }
button { cursor: pointer; padding: 2px 8px; }
button:hover, select:hover { border-color: #888; }
.step-control input { width: 240px; }
.control.heads { flex-basis: 100%; }
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
.tba-main { padding: 12px 16px 40px; }
.head-view { position: relative; }
#head-canvas { position: absolute; left: 0; top: 0; pointer-events: none; }
.token-col { position: absolute; top: 0; }
.token { position: absolute; left: 0; right: 0; height: var(--row-h); line-height: var(--row-h);
  font-size: var(--font-px); padding: 0 7px; box-sizing: border-box; white-space: pre; overflow: hidden;
  text-overflow: ellipsis; cursor: default; border-radius: 2px; }
.token.left { text-align: right; }
.token.hovered { background: rgba(0,0,0,0.12); }
`;

export function installStyles(): void {
  const style = document.createElement("style");
  style.textContent = CSS;
  document.head.appendChild(style);
}
