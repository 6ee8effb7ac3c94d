// Styles of the level-of-detail components (tile map, virtual token columns, thumbnail grid), installed once per
// page (page().styles: the document, or a notebook output's shadow root) by the first one built.

import { page } from "../shell/page";

const CSS = `
.tm-top { display: flex; flex-direction: column; }
.tm-side { display: flex; flex-direction: row; }
.tm-top, .tm-side { overflow: hidden; }
.tm-canvas { cursor: grab; display: block; touch-action: none; }
.tm-canvas:active { cursor: grabbing; }
.tm-labels { overflow: hidden; }
.tm-root { display: flex; flex-direction: column; gap: 6px; }
.mv-lod-body { display: flex; gap: 16px; align-items: flex-start; }
.mv-lod-grid { display: grid; gap: 4px; align-items: center; }
.mv-lod-thumb { display: block; image-rendering: pixelated; cursor: pointer; border: 1px solid var(--tba-border); }
.mv-lod-thumb:hover { outline: 2px solid var(--tba-accent-line); }
`;

let installed: Node | null = null;

export function installScaleCss(): void {
  const where = page().styles;
  if (installed === where) return;
  installed = where;
  const s = document.createElement("style");
  s.textContent = CSS;
  where.appendChild(s);
}
