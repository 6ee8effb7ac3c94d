// Head colours: one colour per head, the same in every view that draws heads (head, model, neuron views). Δ uses
// PuOr's orange and purple (data/compare.ts), so no head colour is an orange or a purple: category10 without its
// orange and purple, then hand-picked colours away from both hues, then golden-angle hues that skip them.

import { page } from "../shell/page";

// prettier-ignore
const BASE = [
  "#1f77b4", "#2ca02c", "#d62728", "#17becf", "#8c564b",
  "#e377c2", "#7f7f7f", "#bcbd22", "#00a087", "#6baed6",
  "#637939", "#f0027f", "#98df8a", "#843c39", "#08519c",
  "#a1d99b", "#c7c7c7", "#e7969c", "#17657d", "#52854c",
];

/** Hues (degrees) kept clear for Δ: PuOr's orange (≈ 25–50°) and purple (≈ 250–290°). */
const RESERVED: [number, number][] = [
  [18, 55],
  [245, 295],
];

/** Head h's colour; in dark mode a lighter variant, so thin translucent lines do not sink into the background. */
export function headColor(h: number): string {
  const dark = page().root.classList.contains("tba-dark");
  if (h < BASE.length) return dark ? lighten(BASE[h] as string, 0.35) : (BASE[h] as string);
  let hue = (h * 137.508) % 360;
  for (const [a, b] of RESERVED) if (hue >= a && hue <= b) hue = (b + 12 + (hue - a)) % 360;
  return `hsl(${Math.round(hue)}, 65%, ${dark ? 64 : 42}%)`;
}

/** `#rrggbb` mixed with white by `t` (0..1). */
function lighten(hex: string, t: number): string {
  const c = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  return `rgb(${c.map((v) => Math.round(v + (255 - v) * t)).join(",")})`;
}

/** The model view's thumbnails use the head colours too (one colour meaning per channel across views). */
export function lineThumbColor(head: number): string {
  return headColor(head);
}
