// The PDF export: the same figure as the SVG export (picture.ts collects it: title line, colour bars, axes, tokens,
// boxes; canvases with vector shapes as lines and heatmap cells, the others as embedded bitmaps), written as one
// vector PDF page by pdfDoc.ts. Text is PDF text in the standard fonts (Helvetica, Symbol for Greek letters and
// arrows), stretched to the width the browser laid it out at, so labels stay where they were; text with a character
// those fonts lack (CJK tokens, emoji) is drawn as a bitmap of the browser's rendering with the same text invisible
// on top, so it can still be searched and copied. 1 CSS px = 0.75 pt (96 px per inch), so the page has the
// figure's size on screen.

import { collect, background, titleFont, vectorOf, MARGIN, TITLE_H, type Figure, type Item } from "./picture";
import { encodeText, literal, num, PdfDoc, utf16 } from "./pdfDoc";
import { textWidth, type VectorShape } from "./vector";

const PT = 0.75;
const FONTS = { text: "/F1", bold: "/F2", symbol: "/F3" };

// The browser's own colour parser: any CSS colour → "#rrggbb" or "rgba(r, g, b, a)".
let parser: CanvasRenderingContext2D | null = null;
function rgba(css: string): [number, number, number, number] {
  parser ??= document.createElement("canvas").getContext("2d") as CanvasRenderingContext2D;
  parser.fillStyle = "#000000";
  parser.fillStyle = css;
  const v = String(parser.fillStyle);
  const m = v.startsWith("#")
    ? [1, 3, 5].map((i) => parseInt(v.slice(i, i + 2), 16))
    : (v.match(/[\d.]+/g)?.map(Number) ?? [0, 0, 0]);
  return [(m[0] ?? 0) / 255, (m[1] ?? 0) / 255, (m[2] ?? 0) / 255, m[3] ?? 1];
}

function parseFont(font: string): { size: number; bold: boolean } {
  const size = Number(/([\d.]+)px/.exec(font)?.[1] ?? 12);
  const w = font.trim().split(/\s+/)[0] ?? "400";
  return { size, bold: w === "bold" || Number(w) >= 600 };
}

/** Content-stream operators and the resources they use. */
class Page {
  readonly ops: string[] = [];
  readonly alphas = new Map<string, number>();
  readonly images: number[] = [];
  private fill = "";
  private stroke = "";
  private alpha = "";

  private setAlpha(a: number): void {
    const key = `GS${Math.round(Math.max(0, Math.min(1, a)) * 100)}`;
    if (key === this.alpha) return;
    this.alphas.set(key, Math.round(Math.max(0, Math.min(1, a)) * 100) / 100);
    this.ops.push(`/${key} gs`);
    this.alpha = key;
  }

  setFill(css: string, alpha = 1): void {
    const [r, g, b, a] = rgba(css);
    const op = `${num(r)} ${num(g)} ${num(b)} rg`;
    if (op !== this.fill) this.ops.push(op);
    this.fill = op;
    this.setAlpha(a * alpha);
  }

  setStroke(css: string, alpha = 1): void {
    const [r, g, b, a] = rgba(css);
    const op = `${num(r)} ${num(g)} ${num(b)} RG`;
    if (op !== this.stroke) this.ops.push(op);
    this.stroke = op;
    this.setAlpha(a * alpha);
  }

  /** After a Q: the colour and alpha in force are unknown. */
  reset(): void {
    this.fill = this.stroke = this.alpha = "";
  }

  rect(x: number, y: number, w: number, h: number, css: string, alpha = 1): void {
    this.setFill(css, alpha);
    this.ops.push(`${num(x)} ${num(y)} ${num(w)} ${num(h)} re f`);
  }

  image(id: number, x: number, y: number, w: number, h: number): void {
    this.images.push(id);
    this.ops.push(`q ${num(w)} 0 0 ${num(-h)} ${num(x)} ${num(y + h)} cm /Im${id} Do Q`);
  }
}

async function shapes(doc: PdfDoc, p: Page, it: Item, vec: VectorShape[]): Promise<void> {
  const canvas = it.canvas as HTMLCanvasElement;
  const sx = it.w / (canvas.clientWidth || it.w);
  const sy = it.h / (canvas.clientHeight || it.h);
  p.ops.push("q", `${num(sx)} 0 0 ${num(sy)} ${num(it.x)} ${num(it.y)} cm`);
  let width = -1;
  let dash = "";
  for (const v of vec) {
    if (v.line || v.path) {
      const pts = v.path ?? (v.line as number[]);
      if ((v.width ?? 1) !== width) p.ops.push(`${num((width = v.width ?? 1))} w`);
      const d = `[${(v.dash ?? []).map(num).join(" ")}] 0 d`;
      if (d !== dash) p.ops.push((dash = d));
      p.setStroke(v.color, v.alpha);
      const segs = [];
      for (let i = 0; i + 1 < pts.length; i += 2) {
        segs.push(`${num(pts[i] as number)} ${num(pts[i + 1] as number)} ${i ? "l" : "m"}`);
      }
      p.ops.push(`${segs.join(" ")} S`);
    } else if (v.rect) p.rect(v.rect[0], v.rect[1], v.rect[2], v.rect[3], v.color, v.alpha);
    else if (v.text !== undefined && v.at) {
      // Placed by its box as the browser measures it: left edge from the alignment, centred on `at`.
      const font = v.font ?? "10px sans-serif";
      const tw = textWidth(v);
      const left = v.at[0] - tw * { left: 0, center: 0.5, right: 1 }[v.align ?? "left"];
      const h = parseFont(font).size * 1.4;
      if (v.vertical) {
        // Turned a quarter left about `at`: the box runs up from the text's start, `align` along that line.
        const start = v.at[1] + tw * { left: 0, center: 0.5, right: 1 }[v.align ?? "left"];
        const box = { x: v.at[0] - h / 2, y: start - tw, w: h, h: tw, vertical: true };
        await textItem(doc, p, { ...box, text: v.text, font, color: v.color });
      } else
        await textItem(doc, p, { x: left - 2, y: v.at[1] - h / 2, w: tw + 4, h, text: v.text, font, color: v.color });
    }
  }
  p.ops.push("Q");
  p.reset();
}

/** A text item: PDF text where the standard fonts have its glyphs, else the browser's bitmap + invisible text. */
async function textItem(doc: PdfDoc, p: Page, it: Item): Promise<void> {
  const s = it.text as string;
  if (encodeText(s)) {
    text(p, it, s, it.font as string, it.color as string);
    return;
  }
  const px = textBitmap(it);
  p.image(await doc.image(px.data, px.width, px.height), it.x, it.y, it.w, it.h);
  text(p, it, s, it.font as string, it.color as string, true);
}

/** Pixels of any canvas (2-D or not), drawn onto a 2-D one of the same size. */
function pixels(c: HTMLCanvasElement): ImageData {
  const t = document.createElement("canvas");
  t.width = c.width;
  t.height = c.height;
  const ctx = t.getContext("2d") as CanvasRenderingContext2D;
  ctx.drawImage(c, 0, 0);
  return ctx.getImageData(0, 0, c.width, c.height);
}

/** The browser's rendering of a text item at 4× (for text the standard fonts cannot show). */
function textBitmap(it: Item): ImageData {
  const k = 4;
  const t = document.createElement("canvas");
  t.width = Math.max(1, Math.ceil(it.w * k));
  t.height = Math.max(1, Math.ceil(it.h * k));
  const ctx = t.getContext("2d") as CanvasRenderingContext2D;
  ctx.scale(k, k);
  ctx.font = it.font ?? "12px sans-serif";
  ctx.fillStyle = it.color ?? "#000";
  ctx.textBaseline = "middle";
  if (it.vertical) {
    ctx.translate(it.w / 2, it.h);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(it.text ?? "", 0, 0);
  } else ctx.fillText(it.text ?? "", 2, it.h / 2);
  return ctx.getImageData(0, 0, t.width, t.height);
}

/** One line of text, its baseline's centre line at `cy` (as SVG's dominant-baseline: central). */
function text(p: Page, it: Item, s: string, font: string, color: string, invisible = false): void {
  const { size, bold } = parseFont(font);
  const coded = encodeText(s) ?? encodeText(s.replace(/[^\x20-\x7e]/gu, "?"));
  if (!coded) return;
  // Stretched to the width the browser laid the glyphs out at (its font is not Helvetica), within reason.
  const natural = coded.em * size;
  const target = it.vertical ? it.h : it.w - 4;
  const stretch = natural > 0 && target > 0 ? Math.max(50, Math.min(200, (100 * target) / natural)) : 100;
  const shift = 0.35 * size; // central line → baseline
  const m = it.vertical
    ? `0 -1 -1 0 ${num(it.x + it.w / 2 + shift)} ${num(it.y + it.h)}`
    : `1 0 0 -1 ${num(it.x + 2)} ${num(it.y + it.h / 2 + shift)}`;
  p.setFill(color);
  const plain = coded.runs.every((r) => r.font === "text") && /^[\x20-\x7e\u00a0-\u00ff]*$/u.test(s);
  if (!plain) p.ops.push(`/Span << /ActualText ${utf16(s)} >> BDC`); // copy and search get the real characters
  const runs = coded.runs.map((r) => {
    const f = r.font === "symbol" ? FONTS.symbol : bold ? FONTS.bold : FONTS.text;
    return `${f} ${num(size)} Tf ${literal(r.bytes)} Tj`;
  });
  // (The render mode is graphics state, not text state: it outlives ET, so every text sets it.)
  p.ops.push(`BT ${invisible ? 3 : 0} Tr ${num(stretch)} Tz ${m} Tm ${runs.join(" ")} ET`);
  if (!plain) p.ops.push("EMC");
}

/** The view as a one-page vector PDF (see the top of this file). */
export async function viewToPdf(root: HTMLElement, fig: Figure): Promise<Blob> {
  const { items, w, h } = collect(root);
  const doc = new PdfDoc();
  const p = new Page();
  p.rect(0, 0, w, h, background());
  const tf = titleFont();
  text(p, { x: MARGIN - 2, y: MARGIN - 2, w: 0, h: TITLE_H }, fig.title, tf.font, tf.color);
  for (const it of items) {
    const vec = it.canvas ? vectorOf(it.canvas) : null;
    if (it.fill) p.rect(it.x, it.y, it.w, it.h, it.fill);
    else if (vec && it.canvas) await shapes(doc, p, it, vec);
    else if (it.canvas) {
      const px = pixels(it.canvas);
      p.image(await doc.image(px.data, px.width, px.height), it.x, it.y, it.w, it.h);
    } else if (it.text) await textItem(doc, p, it);
  }
  const fonts = [
    ["F1", "Helvetica", true],
    ["F2", "Helvetica-Bold", true],
    ["F3", "Symbol", false],
  ] as const;
  const fontIds = fonts.map(([, base, ansi]) => {
    const id = doc.add();
    doc.set(id, `<< /Type /Font /Subtype /Type1 /BaseFont /${base}${ansi ? " /Encoding /WinAnsiEncoding" : ""} >>`);
    return id;
  });
  const states = [...p.alphas].map(([k, a]) => `/${k} << /Type /ExtGState /ca ${num(a)} /CA ${num(a)} >>`);
  const content = doc.add();
  // y down, in CSS px, as the page was laid out.
  const ops = `${num(PT)} 0 0 ${num(-PT)} 0 ${num(h * PT)} cm\n${p.ops.join("\n")}\n`;
  await doc.stream(content, "", new TextEncoder().encode(ops));
  const pages = doc.add();
  const pageId = doc.add();
  const resources =
    `<< /Font << ${fonts.map(([k], i) => `/${k} ${fontIds[i]} 0 R`).join(" ")} >> ` +
    `/ExtGState << ${states.join(" ")} >> /XObject << ${p.images.map((id) => `/Im${id} ${id} 0 R`).join(" ")} >> >>`;
  doc.set(
    pageId,
    `<< /Type /Page /Parent ${pages} 0 R /MediaBox [0 0 ${num(w * PT)} ${num(h * PT)}] ` +
      `/Resources ${resources} /Contents ${content} 0 R >>`,
  );
  doc.set(pages, `<< /Type /Pages /Kids [${pageId} 0 R] /Count 1 >>`);
  const catalog = doc.add();
  doc.set(catalog, `<< /Type /Catalog /Pages ${pages} 0 R >>`);
  const info = doc.add();
  doc.set(info, `<< /Title ${utf16(fig.title)} /Producer (tb-attention) >>`);
  return doc.bytes(catalog, info);
}
