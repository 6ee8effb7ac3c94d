// The text beside the single-head scatter: which head, how far its picture can be trusted (the faithfulness
// badge), the colour legend, the hovered token in its sentence, and the keys a clicked query attends to most.
// Tokens and probe names are user data: text nodes only.

import { METHOD_LABEL, type BatchInfo, type HeadLayout } from "./api";
import { el, fmt } from "./dom";
import { K_COLOR, Q_COLOR, type ColorBy, type Points } from "./points";
import type { KeyLine } from "./scatter";
import { kvHeadIndex, layerHeadLabel } from "../../data/labels";
import type { Manifest } from "../../data/api";

export class SidePanel {
  readonly el = el("div", "emb-side");
  private readonly badge = el("div", "emb-badge");
  private readonly title = el("div");
  private readonly legend = el("div", "emb-legend");
  private readonly context = el("div", "emb-context");
  private readonly keyList = el("div", "emb-keys");

  constructor() {
    this.el.append(this.title, this.badge, this.legend, this.context, this.keyList);
  }

  /** `m`: the probe's manifest, for the model's layer / head numbers. */
  setHead(
    layout: HeadLayout,
    info: BatchInfo | null,
    s: { layer: number; head: number },
    m: Pick<Manifest, "layers">,
  ): void {
    const name = layerHeadLabel(m, s.layer, s.head);
    this.title.textContent =
      name[0]?.toUpperCase() +
      name.slice(1) +
      (info && info.num_kv_heads && info.num_kv_heads < info.num_heads
        ? ` (key head ${kvHeadIndex(m, s.layer, Math.floor(s.head / (info.num_heads / info.num_kv_heads)))})`
        : "");
    const f = layout.faithfulness;
    this.badge.className = `emb-badge ${f === null ? "" : f >= 0.6 ? "good" : f < 0.3 ? "poor" : ""}`;
    this.badge.replaceChildren(
      document.createTextNode(`${METHOD_LABEL[layout.method].replace(" (default)", "")} · faithfulness `),
      el("b", undefined, fmt(f)),
      el("br"),
      document.createTextNode(
        `original space ${fmt(layout.original)} · q/k mixing ${fmt(layout.mixing)}` +
          (f !== null && f < 0.3 ? " · distances here say little about attention" : ""),
      ),
    );
    // Large heads are scored on a sample of queries and laid out on a sample of points: say so where the score is.
    const sample = [
      layout.scoreQueries ? `scored on ${layout.scoreQueries} evenly spaced queries` : "",
      layout.shownPoints ? `${layout.shownPoints.toLocaleString("en-US")} sampled points drawn` : "",
    ].filter(Boolean);
    if (sample.length) this.badge.append(el("br"), el("span", "emb-sample", sample.join(" · ")));
    this.badge.title =
      "Faithfulness: for each query, the Spearman correlation between closeness in this picture and q·k over " +
      "the keys it may attend to, averaged (1 = the picture ranks keys exactly as attention does). Original " +
      "space: the same score for distances in the normalised d_head-dimensional space. Mixing: 1 = queries " +
      "and keys interleave, 0 = separate islands.";
  }

  setLegend(colorBy: ColorBy): void {
    const text: Record<ColorBy, string> = {
      kind: "",
      position: "light → dark: first → last token (green queries, pink keys)",
      token: "one hue per token string; keys hollow",
      norm: "purple → yellow: small → large |q| or |k| (before normalisation); keys hollow",
      probe: "one hue per probe input; keys hollow",
    };
    const q = el("i");
    q.style.background = Q_COLOR;
    const k = el("i");
    k.style.background = K_COLOR;
    this.legend.replaceChildren(
      q,
      document.createTextNode("query"),
      k,
      document.createTextNode("key  "),
      document.createTextNode(text[colorBy]),
      el("br"),
      document.createTextNode(
        "Hover: token and its input · click a query: lines to its top keys (attention) · Esc: all heads",
      ),
    );
  }

  /** Point i's probe input, with its token highlighted. */
  setContext(p: Points, info: BatchInfo, i: number): void {
    const probe = p.probe[i] as number;
    const isQ = i < p.numQueries;
    const toks = isQ ? (info.tokens[probe] ?? []) : (info.key_tokens[probe] ?? info.tokens[probe] ?? []);
    const spans = toks.map((t, j) => {
      const s = el("span", j === p.pos[i] ? "emb-hit" : undefined, t);
      return s;
    });
    const head = el("div", undefined, `${info.probes[probe] ?? ""}:`);
    this.context.replaceChildren(head, ...spans.flatMap((s) => [s, document.createTextNode(" ")]));
  }

  /** The keys query i attends to most, with bars scaled to the largest weight. */
  /** `where`: "layer 5, head 3" (the model's numbers). */
  setKeys(p: Points, i: number, lines: KeyLine[], where: string): void {
    const wmax = Math.max(...lines.map((l) => l.w), 1e-9);
    this.keyList.replaceChildren(
      el("div", undefined, `Query ${JSON.stringify(p.token[i] ?? "")} attends to (${where}):`),
      ...lines.map(({ key, w }) => {
        const row = el("div");
        const bar = el("span", "bar");
        bar.style.width = `${Math.round(60 * (w / wmax))}px`;
        row.append(
          bar,
          el("span", undefined, `${w.toFixed(3)} ${JSON.stringify(p.token[key] ?? "")} (position ${p.pos[key]})`),
        );
        return row;
      }),
    );
  }

  /** Forgets the head, the hovered token's sentence and the clicked query's keys. */
  clear(): void {
    this.title.textContent = "";
    this.badge.replaceChildren();
    this.context.replaceChildren();
    this.keyList.replaceChildren();
  }

  clearKeys(): void {
    this.keyList.replaceChildren();
  }
}
