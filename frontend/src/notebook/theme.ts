// The notebook's light/dark theme, read from what each front end exposes: JupyterLab and Notebook 7 set
// `data-jp-theme-light` on <body>, VS Code's notebook webview sets `vscode-dark` / `vscode-light` /
// `vscode-high-contrast(-light)` classes on <body>; elsewhere (Colab, nbconvert pages, classic Notebook) the
// background the output actually sits on decides, and last the OS preference.

function luminanceDark(color: string): boolean | null {
  const m = /rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)(?:,\s*([\d.]+))?\)/.exec(color);
  if (!m) return null;
  if (m[4] !== undefined && Number(m[4]) < 0.5) return null; // (nearly) transparent: look further up
  const [r, g, b] = [m[1], m[2], m[3]].map((v) => Number(v) / 255) as [number, number, number];
  return 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.4;
}

export function notebookIsDark(host: HTMLElement): boolean {
  const b = document.body;
  const jp = b.dataset["jpThemeLight"];
  if (jp === "true") return false;
  if (jp === "false") return true;
  const c = b.classList;
  if (c.contains("vscode-high-contrast-light") || c.contains("vscode-light")) return false;
  if (c.contains("vscode-dark") || c.contains("vscode-high-contrast")) return true;
  for (let e: Element | null = host.parentElement; e; e = e.parentElement) {
    const dark = luminanceDark(getComputedStyle(e).backgroundColor);
    if (dark !== null) return dark;
  }
  return window.matchMedia?.("(prefers-color-scheme: dark)").matches ?? false;
}

/** Calls `onChange` when the front end may have switched theme (attributes of <html>/<body>, the OS setting). */
export function watchNotebookTheme(onChange: () => void): void {
  const observer = new MutationObserver(onChange);
  const attributeFilter = ["class", "style", "data-jp-theme-light", "data-jp-theme-name", "theme"];
  observer.observe(document.body, { attributes: true, attributeFilter });
  observer.observe(document.documentElement, { attributes: true, attributeFilter });
  window.matchMedia?.("(prefers-color-scheme: dark)").addEventListener?.("change", onChange);
}
