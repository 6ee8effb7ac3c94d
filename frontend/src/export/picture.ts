// PNG and SVG pictures of the active view, composed generically from its DOM: every visible canvas, every text
// leaf (tokens, labels, headings) and every filled box at its on-page position, so any view exports without
// writing export code. Canvases that offer vector shapes (vector.ts) become real SVG lines. Token text is only
// ever set through textContent / createTextNode (never markup).

import type { VectorCanvas } from "./vector";
import { page } from "../shell/page";

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
        const align =
          cs.textAlign === "right" || cs.textAlign === "end" ? "right" : cs.textAlign === "center" ? "center" : "left";
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
  const c = getComputedStyle(page().root).backgroundColor;
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

export function pngBlob(c: HTMLCanvasElement): Promise<Blob> {
  return new Promise((resolve, reject) =>
    c.toBlob((b) => (b ? resolve(b) : reject(new Error("PNG encoding failed"))), "image/png"),
  );
}
