// The shell's keyboard: [ / ] step, ↑ / ↓ layer; every other key goes to the active view (←/→ head, Esc, …).

import type { Selection, SharedState, View } from "./view";

export function shellKey(e: KeyboardEvent, s: SharedState, v: View, select: (sel: Selection) => void): void {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target as HTMLElement | null;
  // Typing in a text field is never a shortcut; in a select or the slider only [ and ] are (arrows are theirs).
  if (t && (t.tagName === "TEXTAREA" || (t instanceof HTMLInputElement && t.type !== "range"))) return;
  if (t && (t.tagName === "SELECT" || t.tagName === "INPUT") && e.key !== "[" && e.key !== "]") return;
  let handled = true;
  if (e.key === "[" || e.key === "]") {
    const i = s.stepIndex + (e.key === "]" ? 1 : -1);
    if (i >= 0 && i < s.steps.length) select({ step: s.steps[i] as number });
  } else if ((e.key === "ArrowUp" || e.key === "ArrowDown") && v.usesLayer !== false) {
    const l = s.layer + (e.key === "ArrowDown" ? 1 : -1);
    if (l >= 0 && l < s.manifest.num_layers) select({ layer: l });
  } else {
    handled = v.onKey?.(e) ?? false;
  }
  if (handled) e.preventDefault();
}
