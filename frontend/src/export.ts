// Export of the active view: PNG and SVG pictures, the raw arrays of the step (npz), and a standalone offline
// HTML snapshot. The pictures are composed generically from the view's DOM: every visible canvas, every text
// leaf (tokens, labels, headings) and every filled box at its on-page position, so any view exports without
// writing export code. Token text is only ever set through textContent / createTextNode (never markup).

import type { VectorCanvas } from "./headView";
import { writeNpz, type NpyArray } from "./npz";

interface Item {
  x: number;
  y: number;
  w: number;
  h: number;
  canvas?: HTMLCanvasElement;
  text?: string;
  fill?: string;
  font?: string;
  color?: string;
  align?: "left" | "right" | "center";
  vertical?: boolean;
}

const SKIP = "select, option, button, input, script, style, .tba-viewbar, .hm-tip";

function transparent(c: string): boolean {
  return c === "transparent" || /rgba\([^)]*,\s*0\)$/.test(c);
}

/** Everything drawn inside `root`, in page order, relative to its top-left corner. */
function collect(root: HTMLElement): { items: Item[]; w: number; h: number } {
  const r0 = root.getBoundingClientRect();
  const items: Item[] = [];
  let w = 0;
  let h = 0;
  const visit = (el: Element): void => {
    if (el.matches(SKIP)) return;
    const cs = getComputedStyle(el);
    if (cs.display === "none" || cs.visibility === "hidden") return;
    const r = el.getBoundingClientRect();
    const box = { x: r.left - r0.left, y: r.top - r0.top, w: r.width, h: r.height };
    if (r.width > 0 && r.height > 0) {
      w = Math.max(w, box.x + box.w);
      h = Math.max(h, box.y + box.h);
      if (el !== root && !transparent(cs.backgroundColor)) items.push({ ...box, fill: cs.backgroundColor });
      if (el instanceof HTMLCanvasElement && el.width > 0 && el.height > 0) {
        items.push({ ...box, canvas: el });
        return;
      }
      const text = Array.from(el.childNodes)
        .filter((n) => n.nodeType === Node.TEXT_NODE)
        .map((n) => n.textContent ?? "")
        .join("")
        .trim();
      if (text) {
        const align = cs.textAlign === "right" || cs.textAlign === "end" ? "right" : cs.textAlign === "center" ? "center" : "left";
        items.push({
          ...box,
          text,
          font: `${cs.fontWeight} ${cs.fontSize} ${cs.fontFamily}`,
          color: cs.color,
          align,
          vertical: cs.writingMode.startsWith("vertical"),
        });
      }
    }
    for (const c of Array.from(el.children)) visit(c);
  };
  visit(root);
  return { items, w: Math.ceil(w), h: Math.ceil(h) };
}

function background(): string {
  const c = getComputedStyle(document.body).backgroundColor;
  return transparent(c) ? "#ffffff" : c;
}

/** Rasterises the view at device resolution (capped so the PNG stays under Chromium's canvas limits). */
export function viewToCanvas(root: HTMLElement): HTMLCanvasElement {
  const { items, w, h } = collect(root);
  const scale = Math.max(1, Math.min(window.devicePixelRatio || 1, 16000 / Math.max(1, w, h)));
  const out = document.createElement("canvas");
  out.width = Math.max(1, Math.round(w * scale));
  out.height = Math.max(1, Math.round(h * scale));
  const ctx = out.getContext("2d") as CanvasRenderingContext2D;
  ctx.scale(scale, scale);
  ctx.fillStyle = background();
  ctx.fillRect(0, 0, w, h);
  ctx.textBaseline = "middle";
  for (const it of items) {
    if (it.fill) {
      ctx.fillStyle = it.fill;
      ctx.fillRect(it.x, it.y, it.w, it.h);
    } else if (it.canvas) {
      ctx.drawImage(it.canvas, it.x, it.y, it.w, it.h);
    } else if (it.text) {
      ctx.save();
      ctx.font = it.font as string;
      ctx.fillStyle = it.color as string;
      ctx.beginPath();
      ctx.rect(it.x, it.y, it.w, it.h);
      ctx.clip();
      if (it.vertical) {
        ctx.translate(it.x + it.w / 2, it.y + it.h);
        ctx.rotate(-Math.PI / 2);
        ctx.textAlign = "left";
        ctx.fillText(it.text, 2, 0);
      } else {
        ctx.textAlign = it.align as CanvasTextAlign;
        const x = it.align === "right" ? it.x + it.w - 7 : it.align === "center" ? it.x + it.w / 2 : it.x + 2;
        ctx.fillText(it.text, x, it.y + it.h / 2);
      }
      ctx.restore();
    }
  }
  return out;
}

/** SVG with vector text and boxes; canvases are embedded as PNG images. */
export function viewToSvg(root: HTMLElement): string {
  const { items, w, h } = collect(root);
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("xmlns", NS);
  svg.setAttribute("width", String(w));
  svg.setAttribute("height", String(h));
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const bg = document.createElementNS(NS, "rect");
  bg.setAttribute("width", "100%");
  bg.setAttribute("height", "100%");
  bg.setAttribute("fill", background());
  svg.appendChild(bg);
  const num = (v: number): string => String(Math.round(v * 1000) / 1000);
  for (const it of items) {
    const vec = it.canvas ? ((it.canvas as VectorCanvas).tbaVector?.() ?? null) : null;
    if (it.fill) {
      const r = document.createElementNS(NS, "rect");
      r.setAttribute("x", num(it.x));
      r.setAttribute("y", num(it.y));
      r.setAttribute("width", num(it.w));
      r.setAttribute("height", num(it.h));
      r.setAttribute("fill", it.fill);
      svg.appendChild(r);
    } else if (vec) {
      // Line views export real <line>s (vector graphics for papers), clipped to nothing: the whole view.
      const g = document.createElementNS(NS, "g");
      g.setAttribute("transform", `translate(${num(it.x)} ${num(it.y)})`);
      for (const v of vec) {
        const el = document.createElementNS(NS, v.line ? "line" : "rect");
        const [a, b, c, d] = (v.line ?? v.rect) as number[];
        if (v.line) {
          el.setAttribute("x1", num(a as number));
          el.setAttribute("y1", num(b as number));
          el.setAttribute("x2", num(c as number));
          el.setAttribute("y2", num(d as number));
          el.setAttribute("stroke", v.color);
          el.setAttribute("stroke-opacity", num(v.alpha));
          el.setAttribute("stroke-width", String(v.width ?? 1));
        } else {
          el.setAttribute("x", num(a as number));
          el.setAttribute("y", num(b as number));
          el.setAttribute("width", num(c as number));
          el.setAttribute("height", num(d as number));
          el.setAttribute("fill", v.color);
          el.setAttribute("fill-opacity", num(v.alpha));
        }
        g.appendChild(el);
      }
      svg.appendChild(g);
    } else if (it.canvas) {
      const img = document.createElementNS(NS, "image");
      img.setAttribute("x", num(it.x));
      img.setAttribute("y", num(it.y));
      img.setAttribute("width", num(it.w));
      img.setAttribute("height", num(it.h));
      img.setAttribute("href", it.canvas.toDataURL("image/png"));
      svg.appendChild(img);
    } else if (it.text) {
      const t = document.createElementNS(NS, "text");
      t.setAttribute("style", `font: ${it.font}`);
      t.setAttribute("fill", it.color as string);
      t.setAttribute("dominant-baseline", "central");
      if (it.vertical) {
        t.setAttribute("transform", `translate(${num(it.x + it.w / 2)} ${num(it.y + it.h - 2)}) rotate(-90)`);
      } else {
        const x = it.align === "right" ? it.x + it.w - 7 : it.align === "center" ? it.x + it.w / 2 : it.x + 2;
        t.setAttribute("x", num(x));
        t.setAttribute("y", num(it.y + it.h / 2));
        t.setAttribute("text-anchor", it.align === "right" ? "end" : it.align === "center" ? "middle" : "start");
      }
      t.textContent = it.text; // serialised with XML escaping: token text cannot become markup
      svg.appendChild(t);
    }
  }
  return '<?xml version="1.0" encoding="UTF-8"?>\n' + new XMLSerializer().serializeToString(svg);
}

export function download(name: string, data: Blob): void {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(data);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

export function pngBlob(c: HTMLCanvasElement): Promise<Blob> {
  return new Promise((resolve, reject) =>
    c.toBlob((b) => (b ? resolve(b) : reject(new Error("PNG encoding failed"))), "image/png"),
  );
}

export function npzBlob(arrays: Record<string, NpyArray>): Blob {
  return new Blob([writeNpz(arrays)], { type: "application/zip" });
}

// -- standalone HTML snapshot ----------------------------------------------------------------------------

function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** Route + sorted query: the key under which a snapshot stores, and its fetch shim finds, a response. */
export function snapshotKey(route: string, params: Record<string, string | number>): string {
  const entries = Object.entries(params)
    .filter(([k]) => k !== "head")
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
  const entries = [...u.searchParams].filter(([k]) => k !== "head").sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const hit = data.responses[u.pathname.slice(1) + "?" + new URLSearchParams(entries).toString()];
  if (!hit) return new Response("not included in this snapshot", { status: 404, statusText: "Not Found" });
  return new Response(bytes(hit.body), { status: 200, headers: { "Content-Type": hit.type } });
};
const src = new TextDecoder().decode(bytes(data.bundle));
import(URL.createObjectURL(new Blob([src], { type: "text/javascript" }))).then((m) => {
  m.render();
  const t = setInterval(() => {
    if (document.body.dataset.state !== "ready" || !window.__tba) return;
    clearInterval(t);
    window.__tba.select({ view: data.view, layer: data.layer });
  }, 50);
});
`;

export interface SnapshotPart {
  route: string;
  params: Record<string, string | number>;
  /** Override the body (e.g. a synthesised runs list); else fetched from the server. */
  body?: Uint8Array;
  type?: string;
}

/** Fetches every part and the bundle, and returns one self-contained HTML file. */
export async function snapshotHtml(title: string, parts: SnapshotPart[], view: string, layer: number): Promise<Blob> {
  const responses: Record<string, { type: string; body: string }> = {};
  for (const p of parts) {
    let body = p.body;
    let type = p.type ?? "application/octet-stream";
    if (!body) {
      const q = new URLSearchParams(Object.entries(p.params).map(([k, v]) => [k, String(v)])).toString();
      const res = await fetch(q ? `${p.route}?${q}` : p.route);
      if (!res.ok) continue; // optional parts (head_stats) may be missing
      type = res.headers.get("Content-Type") ?? type;
      body = new Uint8Array(await res.arrayBuffer());
    }
    responses[snapshotKey(p.route, p.params)] = { type, body: base64(body) };
  }
  const bundle = new Uint8Array(await (await fetch("index.js")).arrayBuffer());
  // JSON inside <script type="application/json">: escaping "<" keeps "</script>" and "<!--" out of the text.
  const json = JSON.stringify({ responses, bundle: base64(bundle), view, layer }).replace(/</g, "\\u003c");
  const esc = (s: string): string =>
    s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const html =
    `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${esc(title)}</title></head><body>\n` +
    `<script type="application/json" id="tba-snapshot">${json}</script>\n` +
    `<script type="module">${LOADER}</script>\n</body></html>\n`;
  return new Blob([html], { type: "text/html" });
}
