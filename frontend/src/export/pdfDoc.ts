// A small PDF 1.7 writer for one-page figures (export/pdf.ts draws on it): objects, streams deflated with the
// browser's CompressionStream (zlib, which is what FlateDecode reads), the standard 14 fonts Helvetica,
// Helvetica-Bold and Symbol (no font embedding: every PDF reader has them), images with an alpha mask, the
// cross-reference table. A library (jsPDF, pdf-lib: 300+ KB) would be inlined into every notebook output; the figure
// needs only what our SVG export already produces (text, boxes, lines, cells, bitmaps).

const enc = new TextEncoder();

/** A PDF number: at most 3 decimals, no exponent. */
export function num(v: number): string {
  const r = Math.round(v * 1000) / 1000;
  return Object.is(r, -0) ? "0" : String(r);
}

// WinAnsiEncoding beyond Latin-1 (the glyphs a figure's text may use).
const WIN_ANSI: Record<string, number> = {
  "€": 0x80,
  "…": 0x85,
  "‘": 0x91,
  "’": 0x92,
  "“": 0x93,
  "”": 0x94,
  "•": 0x95,
  "–": 0x96,
  "—": 0x97,
  "™": 0x99,
};
// The Symbol font's codes for Greek letters, arrows and maths signs (ρ of the Q/K view, Δ of the diff, axis arrows).
const GREEK = "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡ ΣΤΥΦΧΨΩ";
const GREEK_SYM = "ABGDEZHQIKLMNXOPR STUFCYW";
const greek = "αβγδεζηθικλμνξοπρςστυφχψω";
const greek_sym = "abgdezhqiklmnxoprVstufcyw";
const SYMBOL: Record<string, number> = {
  "←": 0xac,
  "↑": 0xad,
  "→": 0xae,
  "↓": 0xaf,
  "↔": 0xab,
  "≤": 0xa3,
  "≥": 0xb3,
  "≠": 0xb9,
  "≈": 0xbb,
  "∞": 0xa5,
  "−": 0x2d,
  "√": 0xd6,
  "∑": 0xe5,
};
for (let i = 0; i < GREEK.length; i++) if (GREEK[i] !== " ") SYMBOL[GREEK[i] as string] = GREEK_SYM.charCodeAt(i);
for (let i = 0; i < greek.length; i++) SYMBOL[greek[i] as string] = greek_sym.charCodeAt(i);

// Helvetica's advance widths (1/1000 em) for ASCII 32–126, from its AFM; other Latin-1 glyphs average 556.
const HELVETICA =
  "278,278,355,556,556,889,667,191,333,333,389,584,278,333,278,278,556,556,556,556,556,556,556,556,556,556,278,278," +
  "584,584,584,556,1015,667,667,722,722,667,611,778,722,278,500,667,556,833,722,778,667,778,722,667,611,722,667," +
  "944,667,667,611,278,278,278,469,556,333,556,556,500,556,556,278,556,556,222,222,500,222,833,556,556,556,556,333," +
  "500,278,556,500,722,500,500,500,334,260,334,584";
const WIDTHS = HELVETICA.split(",").map(Number);

/** A run of text in one font: "text" (Helvetica, WinAnsi) or "symbol", as the bytes to show. */
export interface Run {
  font: "text" | "symbol";
  bytes: number[];
}

/** The runs that draw `s` with the standard fonts, and their width in em; null if a character has no glyph there. */
export function encodeText(s: string): { runs: Run[]; em: number } | null {
  const runs: Run[] = [];
  let em = 0;
  for (const ch of s) {
    const c = ch.codePointAt(0) as number;
    let font: Run["font"] = "text";
    let b: number | undefined;
    if (c >= 32 && c <= 126) b = c;
    else if (c >= 0xa0 && c <= 0xff) b = c;
    else if (WIN_ANSI[ch] !== undefined) b = WIN_ANSI[ch];
    else if (SYMBOL[ch] !== undefined) {
      font = "symbol";
      b = SYMBOL[ch];
    }
    if (b === undefined) return null;
    em +=
      (font === "text" && b <= 126 ? (WIDTHS[b - 32] as number) : font === "symbol" && b >= 0xab ? 987 : 556) / 1000;
    const last = runs[runs.length - 1];
    if (last && last.font === font) last.bytes.push(b);
    else runs.push({ font, bytes: [b] });
  }
  return { runs, em };
}

/** A literal string of bytes: ( ) \ escaped, anything outside printable ASCII as octal. */
export function literal(bytes: number[]): string {
  let out = "(";
  for (const b of bytes) {
    if (b === 0x28 || b === 0x29 || b === 0x5c) out += "\\" + String.fromCharCode(b);
    else if (b >= 32 && b <= 126) out += String.fromCharCode(b);
    else out += "\\" + b.toString(8).padStart(3, "0");
  }
  return out + ")";
}

/** A text string as UTF-16BE hex (document info, /ActualText): any Unicode, no escaping issues. */
export function utf16(s: string): string {
  let hex = "<FEFF";
  for (let i = 0; i < s.length; i++) hex += s.charCodeAt(i).toString(16).padStart(4, "0").toUpperCase();
  return hex + ">";
}

export async function deflate(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** The objects of one PDF file; `add` reserves a number, `set` gives it a body. */
export class PdfDoc {
  private readonly bodies: (Uint8Array | null)[] = [];

  add(): number {
    this.bodies.push(null);
    return this.bodies.length;
  }

  set(id: number, dict: string): void {
    this.bodies[id - 1] = enc.encode(dict);
  }

  /** A deflated stream object; `dict` holds its other entries (without << >>). */
  async stream(id: number, dict: string, data: Uint8Array<ArrayBuffer>): Promise<void> {
    const z = await deflate(data);
    const head = enc.encode(`<< ${dict} /Filter /FlateDecode /Length ${z.length} >>\nstream\n`);
    const tail = enc.encode("\nendstream");
    const out = new Uint8Array(head.length + z.length + tail.length);
    out.set(head);
    out.set(z, head.length);
    out.set(tail, head.length + z.length);
    this.bodies[id - 1] = out;
  }

  /** An RGB image [h, w] from RGBA pixels, with a soft mask when any pixel is not opaque; returns its id. */
  async image(rgba: Uint8ClampedArray, w: number, h: number): Promise<number> {
    const rgb = new Uint8Array(w * h * 3);
    const alpha = new Uint8Array(w * h);
    let opaque = true;
    for (let i = 0, j = 0; i < w * h; i++, j += 3) {
      rgb[j] = rgba[i * 4] as number;
      rgb[j + 1] = rgba[i * 4 + 1] as number;
      rgb[j + 2] = rgba[i * 4 + 2] as number;
      alpha[i] = rgba[i * 4 + 3] as number;
      if (alpha[i] !== 255) opaque = false;
    }
    const base = `/Type /XObject /Subtype /Image /Width ${w} /Height ${h} /BitsPerComponent 8`;
    let mask = "";
    if (!opaque) {
      const m = this.add();
      await this.stream(m, `${base} /ColorSpace /DeviceGray`, alpha);
      mask = ` /SMask ${m} 0 R`;
    }
    const id = this.add();
    await this.stream(id, `${base} /ColorSpace /DeviceRGB${mask}`, rgb);
    return id;
  }

  /** The whole file, with `root` as the catalog and `info` as the document information dictionary. */
  bytes(root: number, info: number): Blob {
    const parts: Uint8Array[] = [enc.encode("%PDF-1.7\n%\u00e2\u00e3\u00cf\u00d3\n")];
    let at = parts[0]?.length ?? 0;
    const offsets: number[] = [];
    this.bodies.forEach((body, i) => {
      offsets.push(at);
      const head = enc.encode(`${i + 1} 0 obj\n`);
      const tail = enc.encode("\nendobj\n");
      parts.push(head, body ?? enc.encode("null"), tail);
      at += head.length + (body ?? enc.encode("null")).length + tail.length;
    });
    const xref =
      `xref\n0 ${offsets.length + 1}\n0000000000 65535 f \n` +
      offsets.map((o) => `${String(o).padStart(10, "0")} 00000 n \n`).join("") +
      `trailer\n<< /Size ${offsets.length + 1} /Root ${root} 0 R /Info ${info} 0 R >>\nstartxref\n${at}\n%%EOF\n`;
    parts.push(enc.encode(xref));
    return new Blob(parts as BlobPart[], { type: "application/pdf" });
  }
}
