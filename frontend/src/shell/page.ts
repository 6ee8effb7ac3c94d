// Where the app lives. In TensorBoard (and in an exported snapshot) that is the document: flags on <body>, styles in
// <head>, keys from the document, test hooks on window. In a notebook output it is a shadow root (notebook/mount.ts),
// so two views in one notebook share no ids, CSS or globals: each view imports its own instance of the bundle
// module, so this module-level choice belongs to one view.

export interface Page {
  /** The app's body: it holds the toolbar and views, the page-state flags (`data-state`, …) and the theme class.
   * In a shadow root it is a <body> element of its own, so the app's `body …` CSS selectors apply unchanged. */
  readonly root: HTMLElement;
  /** Where <style> elements go: document.head, or the shadow root. */
  readonly styles: Node;
  /** Test and benchmark hooks (`__tba`, `__tbaFirstPaintMs`, `__tbaTimings`, …): window, or the host element. */
  readonly hooks: Partial<Window>;
  /** True when the data is embedded in the page (a notebook output): nothing to reload, no TensorBoard host. */
  readonly embedded: boolean;
  /** Dark-mode source for theme.ts; absent: TensorBoard's body class, else the OS preference. */
  readonly theme?: { isDark(): boolean; watch(onChange: () => void): void };
  /** The bundle's own source, for the HTML export where there is no server to fetch index.js from. */
  readonly bundle?: () => Promise<Uint8Array>;
}

let current: Page | null = null;

export function page(): Page {
  // Read lazily: document.body does not exist yet when a <head> script imports the bundle.
  current ??= { root: document.body, styles: document.head, hooks: window, embedded: false };
  return current;
}

/** Mounting somewhere else than the document (notebook/mount.ts); call before the app mounts. */
export function setPage(p: Page): void {
  current = p;
}
