// Head colours. The first ten are d3's category10 (what BertViz users know); BertViz stops there and
// repeats, so ten more hand-picked colours keep 20 heads distinct, and golden-angle hues go beyond.

// prettier-ignore
const BASE = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
  "#393b79", "#e7ba52", "#00a087", "#f0027f", "#7b4173",
  "#637939", "#6baed6", "#9c9ede", "#ff9896", "#98df8a",
];

export function headColor(h: number): string {
  if (h < BASE.length) return BASE[h] as string;
  return `hsl(${Math.round((h * 137.508) % 360)}, 65%, 45%)`;
}

/** Model view colours are per layer (as BertViz), from the same palette. */
export function lineThumbColor(layer: number): string {
  return headColor(layer);
}
