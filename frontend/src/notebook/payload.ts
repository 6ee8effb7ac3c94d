// The data of a notebook output (tb_attention/notebook/payload.py writes it; docs/notebook.md): base64 of one
// zlib stream holding "TBN1", a little-endian u32 header length, a JSON header and the route responses' bodies,
// byte for byte what the plugin's routes would answer (TBA1 containers, manifest JSON, PNG). The transport answers
// the app's requests from it, so the views cannot tell a notebook from TensorBoard.

import type { Transport } from "../data/transport";
import { expandTopK, expandTopKAnswer, qkHeadOf } from "./lod";

export interface Entry {
  route: string;
  params: Record<string, string>;
  type: string;
  offset: number;
  length: number;
  /**
   * "topk": an attention layer reduced to each query's top keys (level of detail, lod.ts), expanded on request;
   * "from-topk": a long layer's attention served from its `topk` answer (the same bytes), `key_len` keys a row.
   */
  lod?: string;
  key_len?: number;
}

/** What the Python call asked for, applied once the app is mounted (mount.ts). */
export interface Options {
  view?: string;
  layer?: number;
  heads?: number[] | null;
  /** The neuron view's head (BertViz's neuron view `head=`). */
  head?: number | null;
  /** Tabs the embedded data cannot feed (e.g. the neuron view without q/k). */
  hide?: string[];
  /** What was left out to stay under the byte cap, or which steps were embedded: shown above the toolbar. */
  notes?: string[];
  /** "dark" | "light" forces the theme (BertViz's display_mode); absent: follow the notebook. */
  theme?: string | null;
  /** Per route, why what it asks for is not embedded (e.g. the Q/K layouts of a step left out for the cap). */
  missing?: Record<string, string>;
}

export interface Payload {
  entries: Entry[];
  options: Options;
  body: Uint8Array<ArrayBuffer>;
}

function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  const bin = atob(text.replace(/\s+/g, ""));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export async function inflate(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

export async function decodePayload(base64: string): Promise<Payload> {
  const raw = await inflate(fromBase64(base64));
  const magic = String.fromCharCode(...raw.subarray(0, 4));
  if (raw.length < 8 || magic !== "TBN1") throw new Error("not a tb-attention notebook payload");
  const headerLen = new DataView(raw.buffer, raw.byteOffset, raw.byteLength).getUint32(4, true);
  const header = JSON.parse(new TextDecoder().decode(raw.subarray(8, 8 + headerLen))) as {
    entries: Entry[];
    options?: Options;
  };
  return { entries: header.entries, options: header.options ?? {}, body: raw.subarray(8 + headerLen) };
}

// Route + its parameters, sorted, but an attention request's `head` (a single head is sliced from the embedded
// layer: shell/loaders.ts). Every other route keeps it: the Q/K tab's `embedding` layouts and a long probe's `tile`
// and `topk` answers are one response per head, and `qk?head=` is cut from the whole layer below.
function keyOf(route: string, params: Iterable<[string, string]>, head = true): string {
  const entries = [...params]
    .filter(([k]) => k !== "head" || (head && route !== "attention"))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([route, entries]);
}

const notFound = (text: string): Response => new Response(text, { status: 404, statusText: "Not Found" });

/** Answers the app's requests from the payload; anything not embedded is a 404 that says so. */
export function payloadTransport(p: Payload): Transport {
  const byKey = new Map<string, Entry>();
  for (const e of p.entries) byKey.set(keyOf(e.route, Object.entries(e.params)), e);
  const expanded = new Map<string, Promise<Uint8Array<ArrayBuffer>>>();
  return async (url: string) => {
    const u = new URL(url, "http://notebook.invalid/");
    const route = u.pathname.replace(/^\/+/, "");
    const key = keyOf(route, u.searchParams);
    const e = byKey.get(key);
    const missing = p.options.missing?.[route] ?? `${route}: not included in this notebook output`;
    const head = u.searchParams.get("head");
    if (!e && route === "qk" && head !== null) {
      // One head's q/k (the neuron view past 512 tokens): cut from the embedded layer, as the plugin cuts it.
      const layer = byKey.get(keyOf(route, u.searchParams, false));
      const one = layer && qkHeadOf(p.body.subarray(layer.offset, layer.offset + layer.length), Number(head));
      return one ? new Response(one, { status: 200, headers: { "Content-Type": layer.type } }) : notFound(missing);
    }
    if (!e) return notFound(missing);
    const stored = p.body.subarray(e.offset, e.offset + e.length);
    let body: Uint8Array<ArrayBuffer> = stored;
    if (e.lod === "topk" || e.lod === "from-topk") {
      let x = expanded.get(key);
      if (!x) {
        x = Promise.resolve(e.lod === "topk" ? expandTopK(stored) : expandTopKAnswer(stored, e.key_len ?? 0));
        expanded.set(key, x);
        while (expanded.size > 4) expanded.delete(expanded.keys().next().value as string); // the loaders cache
      }
      body = await x;
    }
    // (A Response copies the bytes of the view it is given: the payload itself is never handed out.)
    return new Response(body, { status: 200, headers: { "Content-Type": e.type } });
  };
}
