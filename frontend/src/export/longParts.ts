// What the npz and HTML exports take of layers the views never load whole (data/scale.ts: a "qk" layer, or a probe
// past 512 tokens): a whole layer is hundreds of MB or a 413 there, so the exports take what the views draw
// instead (the level-of-detail routes) and say in a note what they leave out.

import { QK_LAYER_WEIGHTS, usesThumbnails, usesTopK, usesTiles, wholeLayerOk } from "../data/scale";
import type { Manifest } from "../data/api";
import { coarsestLevel } from "../draw/tileGrid";
import { storedHead } from "../shell/deepLink";
import { page } from "../shell/page";
import type { SharedState, View } from "../shell/view";
import type { SnapshotPart } from "./snapshot";

/** The stored head the active view shows (its link's model head number), else 0. */
export function shownHead(m: Manifest, layer: number, view: View): number {
  return storedHead(m, layer, view.linkParams?.()["head"] ?? "") ?? 0;
}

/** One head's weights may be asked for (`attention?head=`: the server refuses more than 2^26 rebuilt weights). */
export function headOk(m: Manifest): boolean {
  return m.query_len * m.key_len <= QK_LAYER_WEIGHTS;
}

/** Layers an export cannot take whole, in stored order. */
export function partialLayers(m: Manifest): number[] {
  return Array.from({ length: m.num_layers }, (_, l) => l).filter((l) => !wholeLayerOk(m, l));
}

/**
 * The level-of-detail responses the views draw a long or "qk" step from: every layer's thumbnails (model view),
 * the current layer's top-k (head view; all heads, else head by head for a "qk" layer), each head's coarsest tile
 * plus the tiles the matrix view has on screen (matrix view), and the shown head's q/k and weights (neuron view).
 * Missing parts (a finer tile, another layer's top-k) are answered by the snapshot's "not included" 404.
 */
export function lodParts(state: SharedState, view: View): SnapshotPart[] {
  const m = state.manifest;
  const { run, tag } = state.probe;
  const at = { run, tag, step: state.step };
  const l = state.layer;
  const parts: SnapshotPart[] = [];
  if (usesThumbnails(m)) {
    for (let i = 0; i < m.num_layers; i++) parts.push({ route: "lod", params: { ...at, layer: i, size: 64 } });
  }
  const heads = Array.from({ length: m.num_heads }, (_, h) => h);
  if (usesTopK(m, l)) {
    parts.push({ route: "topk", params: { ...at, layer: l } }); // 400 for a "qk" layer: skipped, heads below
    for (const h of heads) parts.push({ route: "topk", params: { ...at, layer: l, head: h } });
  }
  const shown = shownHead(m, l, view);
  if (usesTiles(m, l)) {
    const top = coarsestLevel(m.query_len, m.key_len);
    for (const h of heads)
      parts.push({ route: "tile", params: { ...at, layer: l, head: h, level: top, row: 0, col: 0 } });
    const tiles = view.id === "matrix" ? (page().hooks.__tbaTiles?.requested ?? []) : [];
    for (const t of new Set(tiles)) {
      const [level, row, col] = t.split("/").map(Number);
      if (level === top && row === 0 && col === 0) continue;
      parts.push({
        route: "tile",
        params: { ...at, layer: l, head: shown, level, row, col } as SnapshotPart["params"],
      });
    }
  }
  if (!wholeLayerOk(m, l)) {
    if (m.has_qk) parts.push({ route: "qk", params: { ...at, layer: l, head: shown } });
    if (headOk(m)) parts.push({ route: "attention", params: { ...at, layer: l, head: shown } });
  }
  return parts;
}

/** The npz's note on what it leaves out of `partial` layers ("" when every layer is whole). */
export function npzNote(m: Manifest, partial: number[], head: { layer: number; head: number } | null): string {
  if (!partial.length) return "";
  const why =
    `layers ${partial.join(", ")} (stored positions) are not exported whole: ` +
    `${m.query_len.toLocaleString("en-US")} tokens` +
    (partial.some((l) => m.storage?.[l] === "qk") ? " and/or weights stored as queries and keys only" : "") +
    " (a whole layer is hundreds of MB, or refused by the server); `attention` holds the other layers " +
    "(`attention_layers`)";
  const one = head
    ? `; attention_head holds stored layer ${head.layer}, head ${head.head} [Q, K] (the head shown)`
    : "; no single head either (more than 2^26 weights)";
  return why + one + "; top-k keys per query: the `topk` route; queries/keys (when logged) are complete";
}
