import { page } from "../shell/page";

// Colour maps as 256-entry RGB lookup tables. Sequential: viridis (perceptually uniform, colour-blind safe,
// legible in grey). Diverging: PuOr (purple = negative, white = 0, orange = positive; colour-blind safe).

function lut(stops: string[]): Uint8ClampedArray {
  const rgb = stops.map((s) => [1, 3, 5].map((i) => parseInt(s.slice(i, i + 2), 16)));
  const out = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * (rgb.length - 1);
    const a = Math.min(rgb.length - 2, Math.floor(t));
    const f = t - a;
    for (let c = 0; c < 3; c++) {
      out[i * 3 + c] = (rgb[a] as number[])[c]! * (1 - f) + (rgb[a + 1] as number[])[c]! * f;
    }
  }
  return out;
}

// prettier-ignore
export const VIRIDIS = lut([
  "#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725",
]);
// prettier-ignore
export const PUOR = lut([
  "#2d004b", "#542788", "#8073ac", "#b2abd2", "#d8daeb", "#f7f7f7", "#fee0b6", "#fdb863", "#e08214", "#b35806",
  "#7f3b08",
]);

// PuOr for dark mode: the same ends, a dark centre, so "no change" is the background, not a white glare.
// prettier-ignore
export const PUOR_DARK = lut([
  "#2d004b", "#542788", "#8073ac", "#6e6898", "#47455a", "#2a2a2e", "#5a4a3a", "#a4753d", "#e08214", "#f3a24a",
  "#fdc98a",
]);

/** The diverging map of the current theme (Δ heatmaps, Δ cells). */
export function diverging(): Uint8ClampedArray {
  return page().root.classList.contains("tba-dark") ? PUOR_DARK : PUOR;
}

export type Scale = "linear" | "sqrt" | "log";

/** Maps |v| / vmax in [0, 1] through the scale (log: 3 decades). */
export function scaled(t: number, scale: Scale): number {
  t = Math.min(1, Math.max(0, t));
  if (scale === "sqrt") return Math.sqrt(t);
  if (scale === "log") return t <= 1e-3 ? 0 : 1 + Math.log10(t) / 3;
  return t;
}

/** Black or white text, whichever reads on colour i of `map` (relative luminance, as WCAG computes it). */
export function textOn(map: Uint8ClampedArray, i: number): string {
  const k = Math.min(255, Math.max(0, Math.round(i))) * 3;
  const lin = (c: number): number => (c / 255 <= 0.03928 ? c / 255 / 12.92 : ((c / 255 + 0.055) / 1.055) ** 2.4);
  const y = 0.2126 * lin(map[k] as number) + 0.7152 * lin(map[k + 1] as number) + 0.0722 * lin(map[k + 2] as number);
  return y > 0.18 ? "#202124" : "#ffffff";
}

export function cssColor(map: Uint8ClampedArray, i: number): string {
  const k = Math.min(255, Math.max(0, Math.round(i))) * 3;
  return `rgb(${map[k]},${map[k + 1]},${map[k + 2]})`;
}
