// Dark mode: TensorBoard toggles `dark-mode` on its own <body> (the plugin iframe is same-origin, so we can
// watch it); outside TensorBoard (exported snapshot, bare plugin page) the OS preference decides.

function parentBody(): HTMLElement | null {
  try {
    const b = window.parent !== window ? window.parent.document.body : null;
    return b ?? null;
  } catch {
    return null; // cross-origin embedding: no access
  }
}

export function isDark(): boolean {
  const b = parentBody();
  if (b) return b.classList.contains("dark-mode");
  return window.matchMedia?.("(prefers-color-scheme: dark)").matches ?? false;
}

/** Applies the theme now and whenever it changes; `onChange` lets canvases repaint with theme colours. */
export function followTheme(onChange: () => void): void {
  const apply = (): void => {
    const dark = isDark();
    if (document.body.classList.contains("tba-dark") === dark) return;
    document.body.classList.toggle("tba-dark", dark);
    onChange();
  };
  document.body.classList.toggle("tba-dark", isDark());
  const b = parentBody();
  if (b) new MutationObserver(apply).observe(b, { attributes: true, attributeFilter: ["class"] });
  else window.matchMedia?.("(prefers-color-scheme: dark)").addEventListener?.("change", apply);
}

/** Text colour for canvas labels in the current theme. */
export function canvasText(): string {
  return document.body.classList.contains("tba-dark") ? "#e8eaed" : "#212121";
}
