// Deep links: what is on screen (view, run, probe, step, layer, compare reference, special tokens, and each view's
// own selection: heads, query token, zoom…) lives in the URL, so a reload or a pasted link restores the picture.
//
// Inside TensorBoard the plugin is a same-origin iframe whose own URL the user never sees: the state goes into
// TensorBoard's URL hash as `p.attention.<key>=<value>` (TensorBoard's convention for plugin URL data, next to its own
// `#attention`), written with replaceState so TensorBoard's router sees no navigation. Opened on its own (the plugin
// page, an exported snapshot) the state is the page's own hash. In a notebook there is no URL to keep it in.
// Layers and heads are written with the model's numbers (data/labels.ts), as every label shows them.

import type { Manifest } from "../data/api";
import { headIndex, layerIndex } from "../data/labels";
import { page } from "./page";
import type { SharedState, View } from "./view";

export type LinkParams = Record<string, string>;

const PREFIX = "p.attention.";

function parentWindow(): Window | null {
  try {
    // Reading the location throws for a cross-origin parent: then there is no URL of ours to keep.
    return window.parent !== window && window.parent.location.href ? window.parent : null;
  } catch {
    return null;
  }
}

/** The hash's `key=value` parts (TensorBoard's hash is `#attention&key=value…`). */
function hashParts(hash: string): string[] {
  return hash.replace(/^#/, "").split("&").filter(Boolean);
}

/** The link the page was opened with ({} when none). */
export function readLink(): LinkParams {
  if (page().embedded) return {};
  const out: LinkParams = {};
  const parent = parentWindow();
  for (const part of hashParts((parent ?? window).location.hash)) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    const key = decodeURIComponent(part.slice(0, eq));
    const value = decodeURIComponent(part.slice(eq + 1).replace(/\+/g, " "));
    if (parent && !key.startsWith(PREFIX)) continue; // TensorBoard's own keys are not ours
    out[parent ? key.slice(PREFIX.length) : key] = value;
  }
  return out;
}

/** Replaces the link with `params` (empty values dropped), keeping whatever else the URL's hash holds. */
export function writeLink(params: LinkParams): void {
  if (page().embedded) return;
  const parent = parentWindow();
  const target = parent ?? window;
  const enc = (k: string, v: string): string => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`;
  const ours = Object.entries(params).filter(([, v]) => v !== "");
  let parts: string[];
  if (parent) {
    const keep = hashParts(parent.location.hash).filter((p) => !decodeURIComponent(p).startsWith(PREFIX));
    parts = [...(keep.length ? keep : ["attention"]), ...ours.map(([k, v]) => enc(PREFIX + k, v))];
  } else {
    parts = ours.map(([k, v]) => enc(k, v));
  }
  const hash = `#${parts.join("&")}`;
  if (target.location.hash === hash) return;
  try {
    const url = target.location.href.replace(/#.*$/, "") + hash;
    target.history.replaceState(target.history.state, "", url);
  } catch {
    // A sandboxed or file:// page may refuse: the link just is not kept.
  }
}

/** Stored index of the model's layer `model` (link values are the model's numbers), or null. */
export function storedLayer(m: Manifest, model: string | undefined): number | null {
  if (model === undefined || model === "" || !/^\d+$/.test(model)) return null;
  for (let l = 0; l < m.num_layers; l++) if (layerIndex(m, l) === Number(model)) return l;
  return null;
}

/** Stored index of the model's head `model` in stored layer `layer`, or null. */
export function storedHead(m: Manifest, layer: number, model: string | undefined): number | null {
  if (model === undefined || model === "" || !/^\d+$/.test(model)) return null;
  for (let h = 0; h < m.num_heads; h++) if (headIndex(m, layer, h) === Number(model)) return h;
  return null;
}

/** A non-negative integer link value, or null. */
export function linkInt(v: string | undefined): number | null {
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : null;
}

/** The link of what is shown: the shared selection, the toolbar's `shell` choices and the view's own part. */
export function shownLink(s: SharedState, v: View, shell: LinkParams): LinkParams {
  return {
    view: v.id,
    run: s.probe.run,
    tag: s.probe.tag,
    step: String(s.step),
    layer: String(layerIndex(s.manifest, s.layer)),
    ...shell,
    ...(v.linkParams?.() ?? {}),
  };
}

/** A link pasted over the page's own (hash-only navigation does not reload): start again from it. */
export function reloadOnPastedLink(): void {
  if (page().embedded || parentWindow()) return; // TensorBoard's own hash changes are its own business
  window.addEventListener("hashchange", () => window.location.reload());
}

/** `params` as the page's own hash holds them (without "#"): an exported snapshot opens at it. */
export function encodeLink(params: LinkParams): string {
  return Object.entries(params)
    .filter(([, v]) => v !== "")
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join("&");
}
