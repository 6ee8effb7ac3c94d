// Page events the virtual and windowed token views share: delegated hover / click on `.token` rows (one listener
// set for thousands of rows) and a scroll listener throttled to one run per animation frame.

import type { HoverLock } from "../../controls/hoverLock";
import type { Hover } from "./paths";

/** Hover and click-to-lock of the `.token` elements under `root` (they may come and go: virtual columns). */
export function delegateTokens(root: HTMLElement, lock: HoverLock<Hover>): void {
  const tokenOf = (e: Event): Hover | null => {
    const el = (e.target as Element).closest<HTMLElement>(".token");
    return el ? { side: el.classList.contains("left") ? "left" : "right", index: Number(el.dataset["index"]) } : null;
  };
  root.addEventListener("mouseover", (e) => {
    const t = tokenOf(e);
    if (t) lock.hover(t);
  });
  root.addEventListener("mouseout", (e) => {
    const to = (e.relatedTarget as Element | null)?.closest?.(".token");
    if (!to || !root.contains(to)) lock.hover(null);
  });
  root.addEventListener("click", (e) => {
    const t = tokenOf(e);
    if (t) lock.click(t);
  });
}

/** `run()` at most once per animation frame while the page scrolls or resizes (events skipped while `ready()` is
 * false). Capture: in a notebook the page scrolls inside an element (JupyterLab's panel), whose scroll events do
 * not bubble to window. */
export function onPageScroll(ready: () => boolean, run: () => void): void {
  let scheduled = false;
  const on = (): void => {
    if (scheduled || !ready()) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      run();
    });
  };
  window.addEventListener("scroll", on, { passive: true, capture: true });
  window.addEventListener("resize", on, { passive: true });
}
