// The standalone offline HTML snapshot: the step's raw route responses and the bundle itself in one file, replayed
// by a fetch shim, so every view works from file:// with no server.

import { request } from "../data/transport";
import { page } from "../shell/page";

function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** Route + sorted query: the key under which a snapshot stores, and its fetch shim finds, a response. */
export function snapshotKey(route: string, params: Record<string, string | number>): string {
  // Every parameter counts, `head` too: a long probe's snapshot holds single heads (qk, attention, topk, tiles).
  const entries = Object.entries(params)
    .map(([k, v]): [string, string] => [k, String(v)])
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `${route}?${new URLSearchParams(entries).toString()}`;
}

// The loader is static text (no user data): it installs a fetch shim over the embedded responses and imports
// the embedded bundle from a blob URL, so the snapshot works from file:// with no network.
const LOADER = `
const data = JSON.parse(document.getElementById("tba-snapshot").textContent);
window.__tbaSnapshot = true;
const bytes = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
window.fetch = async (url) => {
  const u = new URL(String(url), "http://snapshot.invalid/");
  const entries = [...u.searchParams].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const hit = data.responses[u.pathname.slice(1) + "?" + new URLSearchParams(entries).toString()];
  if (!hit) {
    const what = u.pathname.slice(1);
    const text = "not included in this HTML snapshot (" + what + "): it holds this step's attention, q/k, metrics, " +
      "rollout and the Q/K layouts that were ready; of a long or q/k-only layer only what was on screen (the " +
      "shown head, its coarsest tiles, top-k lines, thumbnails); open TensorBoard for the rest";
    return new Response(text, { status: 404, statusText: "Not Found" });
  }
  return new Response(bytes(hit.body), { status: 200, headers: { "Content-Type": hit.type } });
};
const src = new TextDecoder().decode(bytes(data.bundle));
// Open at the picture that was exported (view, head, query, zoom…): the app reads its deep link from the hash.
if (data.link) history.replaceState(null, "", "#" + data.link);
import(URL.createObjectURL(new Blob([src], { type: "text/javascript" }))).then((m) => {
  m.render();
  if (data.link) return;
  const t = setInterval(() => {
    if (document.body.dataset.state !== "ready" || !window.__tba) return;
    clearInterval(t);
    window.__tba.select({ view: data.view, layer: data.layer });
  }, 50);
});
`;

const WAIT_MS = 60_000;

export interface SnapshotPart {
  route: string;
  params: Record<string, string | number>;
  /** Override the body (e.g. a synthesised runs list); else fetched from the server. */
  body?: Uint8Array;
  /** A layout the server computes in the background (202): wait for it (up to WAIT_MS) so the file has it. */
  wait?: boolean;
  type?: string;
}

/** Fetches every part and the bundle, and returns one self-contained HTML file. */
export async function snapshotHtml(
  title: string,
  parts: SnapshotPart[],
  view: string,
  layer: number,
  link = "",
): Promise<Blob> {
  const responses: Record<string, { type: string; body: string }> = {};
  for (const p of parts) {
    let body = p.body;
    let type = p.type ?? "application/octet-stream";
    if (!body) {
      const q = new URLSearchParams(Object.entries(p.params).map(([k, v]) => [k, String(v)])).toString();
      let res = await request(q ? `${p.route}?${q}` : p.route);
      for (const t0 = performance.now(); p.wait && res.status === 202 && performance.now() - t0 < WAIT_MS;) {
        await new Promise((r) => setTimeout(r, 400));
        res = await request(q ? `${p.route}?${q}` : p.route);
      }
      if (res.status !== 200) continue; // optional parts (head_stats), layouts still computing (202)
      type = res.headers.get("Content-Type") ?? type;
      body = new Uint8Array(await res.arrayBuffer());
    }
    responses[snapshotKey(p.route, p.params)] = { type, body: base64(body) };
  }
  // A notebook output has no server to fetch index.js from: it hands over the bundle it was loaded from.
  const own = page().bundle;
  const bundle = own ? await own() : new Uint8Array(await (await fetch("index.js")).arrayBuffer());
  // JSON inside <script type="application/json">: escaping "<" keeps "</script>" and "<!--" out of the text.
  const json = JSON.stringify({ responses, bundle: base64(bundle), view, layer, link }).replace(/</g, "\\u003c");
  const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const html =
    `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${esc(title)}</title></head><body>\n` +
    `<script type="application/json" id="tba-snapshot">${json}</script>\n` +
    `<script type="module">${LOADER}</script>\n</body></html>\n`;
  return new Blob([html], { type: "text/html" });
}
