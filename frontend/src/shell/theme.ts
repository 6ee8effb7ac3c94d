// Dark mode: TensorBoard toggles `dark-mode` on its own <body> (the plugin iframe is same-origin, so we can
// watch it); outside TensorBoard (exported snapshot, bare plugin page) the OS preference decides; in a notebook
// the page says (notebook/theme.ts follows the notebook's own theme).

import { page } from "./page";

function parentBody(): HTMLElement | null {
  try {
    const b = window.parent !== window ? window.parent.document.body : null;
    return b ?? null;
  } catch {
    return null; // cross-origin embedding: no access
  }
}

export function isDark(): boolean {
  const source = page().theme;
  if (source) return source.isDark();
  const b = parentBody();
  if (b) return b.classList.contains("dark-mode");
  return window.matchMedia?.("(prefers-color-scheme: dark)").matches ?? false;
}

/** Applies the theme now and whenever it changes; `onChange` lets canvases repaint with theme colours. */
export function followTheme(onChange: () => void): void {
  const root = page().root;
  const apply = (): void => {
    const dark = isDark();
    if (root.classList.contains("tba-dark") === dark) return;
    root.classList.toggle("tba-dark", dark);
    onChange();
  };
  root.classList.toggle("tba-dark", isDark());
  const source = page().theme;
  const b = parentBody();
  if (source) source.watch(apply);
  else if (b) new MutationObserver(apply).observe(b, { attributes: true, attributeFilter: ["class"] });
  else window.matchMedia?.("(prefers-color-scheme: dark)").addEventListener?.("change", apply);
}

/** Text colour for canvas labels in the current theme. */
export function canvasText(): string {
  return tokenColor("--tba-fg");
}

/** A colour token of the current theme (shell/styles.ts): canvases paint with the same colours as the DOM. */
export function tokenColor(name: string): string {
  const v = getComputedStyle(page().root).getPropertyValue(name).trim();
  if (v) return v;
  return page().root.classList.contains("tba-dark") ? "#e8eaed" : "#202124"; // before the styles are installed
}
