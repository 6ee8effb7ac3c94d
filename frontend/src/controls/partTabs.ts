// Encoder-decoder probes are logged as `<tag>/encoder`, `<tag>/decoder`, `<tag>/cross`: when the current probe
// is one of them, Encoder / Decoder / Cross buttons switch between its siblings (BertViz's attention filter).

import type { ProbeRef } from "../shell/view";

export class PartTabs {
  readonly el = document.createElement("div");

  constructor(private readonly onSelect: (probe: ProbeRef) => void) {}

  /** Rebuilds the buttons for the current probe; hidden unless it has at least two sibling parts. */
  sync(p: ProbeRef | null, probes: readonly ProbeRef[]): void {
    const m = p ? /^(.*)\/(encoder|decoder|cross)$/.exec(p.tag) : null;
    const siblings = m
      ? (["encoder", "decoder", "cross"] as const).filter((part) =>
          probes.some((q) => q.run === p?.run && q.tag === `${m[1]}/${part}`),
        )
      : [];
    this.el.className = "tba-parts";
    this.el.id = "part-tabs";
    this.el.style.display = siblings.length >= 2 ? "" : "none";
    this.el.replaceChildren(
      ...siblings.map((part) => {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "tba-part";
        b.dataset["part"] = part;
        b.textContent = part === "cross" ? "Cross" : part[0]?.toUpperCase() + part.slice(1);
        b.classList.toggle("active", m?.[2] === part);
        b.addEventListener("click", () => this.onSelect({ run: (p as ProbeRef).run, tag: `${m?.[1]}/${part}` }));
        return b;
      }),
    );
  }
}
