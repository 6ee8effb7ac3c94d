// The model's own layer and head numbers. A probe may store a subset (`capture(model, layers=[0, -1], heads=[0, 3])`
// stores 2 layers × 2 heads); the manifest's optional `layers` list (docs/format.md, "Layers") says which layer and
// heads of the model each stored one is. Views index arrays by the stored position and show these numbers in every
// label, menu, tooltip and export, so a subset is never renumbered. Without `layers`, stored = model numbering.

import type { LayerInfo, Manifest } from "./api";

type WithLayers = Pick<Manifest, "layers">;

export function layerInfo(m: WithLayers, layer: number): LayerInfo | null {
  return m.layers?.[layer] ?? null;
}

/** The model's index of stored layer `layer`. */
export function layerIndex(m: WithLayers, layer: number): number {
  const i = layerInfo(m, layer)?.index;
  return typeof i === "number" ? i : layer;
}

/** The model's index of stored head `head` of stored layer `layer`. */
export function headIndex(m: WithLayers, layer: number, head: number): number {
  const h = layerInfo(m, layer)?.heads?.[head];
  return typeof h === "number" ? h : head;
}

/** The model's index of stored key head `kvHead` (grouped-query attention) of stored layer `layer`. */
export function kvHeadIndex(m: WithLayers, layer: number, kvHead: number): number {
  const h = layerInfo(m, layer)?.kv_heads?.[kvHead];
  return typeof h === "number" ? h : kvHead;
}

/** The model's head indices when every stored layer keeps the same heads (column headers), else null. */
export function sharedHeads(m: WithLayers & Pick<Manifest, "num_layers" | "num_heads">): number[] | null {
  const first = Array.from({ length: m.num_heads }, (_, h) => headIndex(m, 0, h));
  for (let l = 1; l < m.num_layers; l++) {
    for (let h = 0; h < m.num_heads; h++) if (headIndex(m, l, h) !== first[h]) return null;
  }
  return first;
}

/** "layer 5" / "Layer 5". */
export function layerLabel(m: WithLayers, layer: number, capital = false): string {
  return `${capital ? "Layer" : "layer"} ${layerIndex(m, layer)}`;
}

/** "head 3" / "Head 3". */
export function headLabel(m: WithLayers, layer: number, head: number, capital = false): string {
  return `${capital ? "Head" : "head"} ${headIndex(m, layer, head)}`;
}

/** "layer 5, head 3". */
export function layerHeadLabel(m: WithLayers, layer: number, head: number): string {
  return `${layerLabel(m, layer)}, ${headLabel(m, layer, head)}`;
}

/** A note for summaries when the probe stores a subset of the model's layers or heads, else "". */
export function subsetNote(m: WithLayers & Pick<Manifest, "num_layers" | "num_heads">): string {
  if (!m.layers) return "";
  const layers = m.layers.map((x) => x.index);
  const renumbered = layers.some((i, l) => i !== l);
  const heads = sharedHeads(m);
  const headsRenumbered = heads ? heads.some((h, i) => h !== i) : true;
  const parts: string[] = [];
  if (renumbered) parts.push(`layers ${layers.join(", ")} of the model`);
  if (headsRenumbered) parts.push(heads ? `heads ${heads.join(", ")}` : "a subset of heads per layer");
  return parts.length ? `logged: ${parts.join(", ")}` : "";
}
