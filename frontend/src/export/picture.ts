// PNG and SVG pictures of the active view, composed generically from its DOM: every visible canvas, every text
// leaf (tokens, labels, headings, colour-bar ticks) and every filled box at its on-page position, so any view
// exports without writing export code. The figure is cropped to what is drawn (text measured by its glyphs, not its
// block's width) and gets a title line (run, probe, step, layer, head). Canvases that offer vector shapes
// (vector.ts: the head view's lines, heatmap cells up to VECTOR_CELLS, colour bars) become SVG elements, and are
// redrawn at the PNG's scale instead of enlarged, so 2× and 4× PNGs stay sharp. Token text is only ever set through
// textContent / createTextNode (never markup). The PDF export (pdf.ts) draws the same items.

import { paintShapes, type VectorCanvas, type VectorShape } from "./vector";
import { page } from "../shell/page";

export interface Item {
  x: number;
  y: number;
  w: number;
  h: number;
  canvas?: HTMLCanvasElement;
  text?: string;
  fill?: string;
  font?: string;
  color?: string;
  vertical?: boolean;
}

export interface Figure {
  /** The title line above the picture ("run / probe · step 500 · layer 5 · head 3"). */
  title: string;
  /** PNG pixels per CSS px (1, 2 or 4). */
  scale?: number;
}

const SKIP = "select, option, button, input, script, style, .tba-viewbar, .hm-tip, .emb-tip, .emb-controls";
export const MARGIN = 10;
export const TITLE_H = 24;

function transparent(c: string): boolean {
  return c === "transparent" || /rgba\([^)]*,\s*0\)$/.test(c);
}

/** The glyphs' box of an element's own text (a block's box spans the page; its text does not). */
function textBox(el: Element): DOMRect | null {
  let box: DOMRect | null = null;
  for (const n of Array.from(el.childNodes)) {
    if (n.nodeType !== Node.TEXT_NODE || !(n.textContent ?? "").trim()) continue;
    const range = document.createRange();
    range.selectNodeContents(n);
    const r = range.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    box = box
      ? new DOMRect(
          Math.min(box.left, r.left),
          Math.min(box.top, r.top),
          Math.max(box.right, r.right) - Math.min(box.left, r.left),
          Math.max(box.bottom, r.bottom) - Math.min(box.top, r.top),
        )
      : r;
  }
  return box;
}

/** The lines of an element's own wrapped text: words grouped by the line box they were laid out in. */
function textLines(el: Element): { text: string; x: number; y: number; w: number; h: number }[] {
  const lines: { text: string; x: number; y: number; w: number; h: number }[] = [];
  for (const n of Array.from(el.childNodes)) {
    if (n.nodeType !== Node.TEXT_NODE) continue;
    const s = n.textContent ?? "";
    const range = document.createRange();
    for (const m of s.matchAll(/\S+/g)) {
      range.setStart(n, m.index ?? 0);
      range.setEnd(n, (m.index ?? 0) + m[0].length);
      const r = range.getBoundingClientRect();
      const last = lines[lines.length - 1];
      if (last && Math.abs(last.y - r.top) < r.height / 2) {
        last.text += ` ${m[0]}`;
        last.w = r.right - last.x;
      } else lines.push({ text: m[0], x: r.left, y: r.top, w: r.width, h: r.height });
    }
  }
  return lines;
}

/** Everything drawn inside `root`, in page order, relative to the top-left of what is drawn. */
export function collect(root: HTMLElement): { items: Item[]; w: number; h: number } {
  const r0 = root.getBoundingClientRect();
  const items: Item[] = [];
  const visit = (el: Element): void => {
    if (el.matches(SKIP)) return;
    const cs = getComputedStyle(el);
    if (cs.display === "none" || cs.visibility === "hidden") return;
    const r = el.getBoundingClientRect();
    const box = { x: r.left - r0.left, y: r.top - r0.top, w: r.width, h: r.height };
    if (r.width > 0 && r.height > 0) {
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
      const glyphs = text ? textBox(el) : null;
      const lineH = parseFloat(cs.fontSize) * 1.6;
      if (text && glyphs && !cs.writingMode.startsWith("vertical") && glyphs.height > lineH) {
        // Wrapped text (a colour bar's title): one item per line, as the browser broke it.
        for (const line of textLines(el)) {
          const font = `${cs.fontWeight} ${cs.fontSize} ${cs.fontFamily}`;
          items.push({
            x: line.x - r0.left - 2,
            y: line.y - r0.top,
            w: line.w + 4,
            h: line.h,
            text: line.text,
            font,
            color: cs.color,
          });
        }
      } else if (text && glyphs) {
        const vertical = cs.writingMode.startsWith("vertical");
        // Horizontal text keeps its element's box for alignment but only its glyphs' extent counts for cropping.
        items.push({
          ...(vertical
            ? { x: glyphs.left - r0.left, y: glyphs.top - r0.top, w: glyphs.width, h: glyphs.height }
            : { ...box, x: glyphs.left - r0.left - 2, w: glyphs.width + 4 }),
          text,
          font: `${cs.fontWeight} ${cs.fontSize} ${cs.fontFamily}`,
          color: cs.color,
          vertical,
        });
      }
    }
    for (const c of Array.from(el.children)) visit(c);
  };
  visit(root);
  // Crop: the union of what is drawn (fills of empty boxes count only where something else is drawn too).
  const drawn = items.filter((it) => !it.fill);
  const x0 = Math.min(...drawn.map((it) => it.x), Infinity);
  const y0 = Math.min(...drawn.map((it) => it.y), Infinity);
  const x1 = Math.max(...drawn.map((it) => it.x + it.w), -Infinity);
  const y1 = Math.max(...drawn.map((it) => it.y + it.h), -Infinity);
  if (!Number.isFinite(x0)) return { items: [], w: 1, h: 1 };
  const out = items
    .map((it) => ({ ...it, x: it.x - x0 + MARGIN, y: it.y - y0 + MARGIN + TITLE_H }))
    .map((it) => (it.fill ? clip(it, x1 - x0 + MARGIN, y1 - y0 + MARGIN + TITLE_H) : it));
  return { items: out, w: Math.ceil(x1 - x0 + 2 * MARGIN), h: Math.ceil(y1 - y0 + 2 * MARGIN + TITLE_H) };
}

/** A background box cut to the figure (a full-width row highlight must not widen it). */
function clip(it: Item, w: number, h: number): Item {
  const x = Math.max(MARGIN, it.x);
  const y = Math.max(MARGIN + TITLE_H, it.y);
  return { ...it, x, y, w: Math.max(0, Math.min(it.x + it.w, w) - x), h: Math.max(0, Math.min(it.y + it.h, h) - y) };
}

export function background(): string {
  const c = getComputedStyle(page().root).backgroundColor;
  return transparent(c) ? "#ffffff" : c;
}

export function titleFont(): { font: string; color: string } {
  const cs = getComputedStyle(page().root);
  return { font: `600 13px ${cs.fontFamily}`, color: cs.color };
}

export function vectorOf(c: HTMLCanvasElement): VectorShape[] | null {
  return (c as VectorCanvas).tbaVector?.() ?? null;
}

/** Rasterises the view at `scale` (capped so the PNG stays under Chromium's canvas limits). */
export function viewToCanvas(root: HTMLElement, fig: Figure): HTMLCanvasElement {
  const { items, w, h } = collect(root);
  const scale = Math.max(1, Math.min(fig.scale ?? 1, 16000 / Math.max(1, w, h)));
  const out = document.createElement("canvas");
  out.width = Math.max(1, Math.round(w * scale));
  out.height = Math.max(1, Math.round(h * scale));
  const ctx = out.getContext("2d") as CanvasRenderingContext2D;
  ctx.scale(scale, scale);
  ctx.fillStyle = background();
  ctx.fillRect(0, 0, w, h);
  ctx.textBaseline = "middle";
  const t = titleFont();
  ctx.font = t.font;
  ctx.fillStyle = t.color;
  ctx.fillText(fig.title, MARGIN, MARGIN + TITLE_H / 2 - 2);
  for (const it of items) {
    const vec = it.canvas ? vectorOf(it.canvas) : null;
    if (it.fill) {
      ctx.fillStyle = it.fill;
      ctx.fillRect(it.x, it.y, it.w, it.h);
    } else if (vec && it.canvas) {
      // Redrawn at this scale from its shapes: sharp at 4×.
      const sx = it.w / (it.canvas.clientWidth || it.w);
      const sy = it.h / (it.canvas.clientHeight || it.h);
      ctx.save();
      ctx.translate(it.x, it.y);
      ctx.scale(sx, sy);
      paintShapes(ctx, vec);
      ctx.restore();
    } else if (it.canvas) {
      ctx.imageSmoothingEnabled = false; // heatmap cells stay cells when enlarged
      ctx.drawImage(it.canvas, it.x, it.y, it.w, it.h);
    } else if (it.text) {
      ctx.save();
      ctx.font = it.font as string;
      ctx.fillStyle = it.color as string;
      if (it.vertical) {
        ctx.translate(it.x + it.w / 2, it.y + it.h);
        ctx.rotate(-Math.PI / 2);
        ctx.textAlign = "left";
        ctx.fillText(it.text, 0, 0);
      } else {
        ctx.textAlign = "left";
        ctx.fillText(it.text, it.x + 2, it.y + it.h / 2);
      }
      ctx.restore();
    }
  }
  return out;
}

/** SVG with vector text, boxes, lines and (where offered) heatmap cells; other canvases are embedded as PNG. */
export function viewToSvg(root: HTMLElement, fig: Figure): string {
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
  const text = (x: number, y: number, s: string, font: string, color: string): SVGTextElement => {
    const t = document.createElementNS(NS, "text");
    t.setAttribute("style", `font: ${font}`);
    t.setAttribute("fill", color);
    t.setAttribute("dominant-baseline", "central");
    t.setAttribute("x", num(x));
    t.setAttribute("y", num(y));
    t.textContent = s; // serialised with XML escaping: token text cannot become markup
    return t;
  };
  const tf = titleFont();
  const title = text(MARGIN, MARGIN + TITLE_H / 2 - 2, fig.title, tf.font, tf.color);
  title.setAttribute("class", "tba-title");
  svg.appendChild(title);
  for (const it of items) {
    const vec = it.canvas ? vectorOf(it.canvas) : null;
    if (it.fill) {
      const r = document.createElementNS(NS, "rect");
      r.setAttribute("x", num(it.x));
      r.setAttribute("y", num(it.y));
      r.setAttribute("width", num(it.w));
      r.setAttribute("height", num(it.h));
      r.setAttribute("fill", it.fill);
      svg.appendChild(r);
    } else if (vec && it.canvas) {
      const g = document.createElementNS(NS, "g");
      const sx = it.w / (it.canvas.clientWidth || it.w);
      const sy = it.h / (it.canvas.clientHeight || it.h);
      g.setAttribute("transform", `translate(${num(it.x)} ${num(it.y)}) scale(${num(sx)} ${num(sy)})`);
      g.setAttribute("shape-rendering", vec.some((v) => v.rect) ? "crispEdges" : "auto");
      for (const v of vec) {
        if (v.text !== undefined && v.at) {
          g.appendChild(text(v.at[0], v.at[1], v.text, v.font ?? "10px sans-serif", v.color));
          const anchor = { left: "start", center: "middle", right: "end" }[v.align ?? "left"];
          (g.lastChild as Element).setAttribute("text-anchor", anchor);
          if (v.vertical)
            (g.lastChild as Element).setAttribute("transform", `rotate(-90 ${num(v.at[0])} ${num(v.at[1])})`);
          continue;
        }
        if (v.path) {
          const el = document.createElementNS(NS, "polyline");
          el.setAttribute("points", v.path.map(num).join(" "));
          el.setAttribute("fill", "none");
          el.setAttribute("stroke", v.color);
          el.setAttribute("stroke-width", String(v.width ?? 1));
          if (v.alpha < 1) el.setAttribute("stroke-opacity", num(v.alpha));
          if (v.dash) el.setAttribute("stroke-dasharray", v.dash.join(" "));
          g.appendChild(el);
          continue;
        }
        const el = document.createElementNS(NS, v.line ? "line" : "rect");
        const [a, b, c, d] = (v.line ?? v.rect) as number[];
        if (v.line) {
          if (v.dash) el.setAttribute("stroke-dasharray", v.dash.join(" "));
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
          if (v.alpha < 1) el.setAttribute("fill-opacity", num(v.alpha));
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
      const t = text(it.x + 2, it.y + it.h / 2, it.text, it.font as string, it.color as string);
      if (it.vertical) {
        t.removeAttribute("x");
        t.removeAttribute("y");
        t.setAttribute("transform", `translate(${num(it.x + it.w / 2)} ${num(it.y + it.h)}) rotate(-90)`);
      }
      svg.appendChild(t);
    }
  }
  return '<?xml version="1.0" encoding="UTF-8"?>\n' + new XMLSerializer().serializeToString(svg);
}

export function pngBlob(c: HTMLCanvasElement): Promise<Blob> {
  return new Promise((resolve, reject) =>
    c.toBlob((b) => (b ? resolve(b) : reject(new Error("PNG encoding failed"))), "image/png"),
  );
}
