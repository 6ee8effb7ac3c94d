// One coloured square per head (BertViz's checkboxes): click toggles, double-click solos (or, on the only
// active head, re-selects all), and the last active head cannot be turned off, so the view is never empty.

import { headColor } from "../draw/palette";

export class HeadToggles {
  readonly el: HTMLDivElement;
  private readonly boxes: HTMLDivElement;
  private active: boolean[] = [];
  private entropy: ArrayLike<number> | null = null;
  /** The model's name of stored head h ("head 3" when a subset of heads was logged; data/labels.ts). */
  private label: (h: number) => string = (h) => `head ${h}`;

  constructor(private readonly onChange: (active: boolean[]) => void) {
    this.el = document.createElement("div");
    this.el.className = "control heads";
    const label = document.createElement("span");
    label.textContent = "Heads";
    this.boxes = document.createElement("div");
    this.boxes.id = "head-toggles";
    const all = this.button("heads-all", "all", () => this.active.map(() => true));
    // "none" keeps the first active head: a view with zero heads would show nothing at all.
    const none = this.button("heads-none", "none", () => {
      const first = Math.max(0, this.active.indexOf(true));
      return this.active.map((_, h) => h === first);
    });
    this.el.append(label, this.boxes, all, none);

    this.boxes.addEventListener("click", (e) => {
      const h = this.headOf(e);
      if (h < 0) return;
      const next = this.active.slice();
      next[h] = !next[h];
      if (next.some(Boolean)) this.update(next);
    });
    this.boxes.addEventListener("dblclick", (e) => {
      const h = this.headOf(e);
      if (h < 0) return;
      const onlyThis = this.active.every((a, i) => a === (i === h));
      this.update(this.active.map((_, i) => onlyThis || i === h));
    });
  }

  private button(id: string, text: string, next: () => boolean[]): HTMLButtonElement {
    const b = document.createElement("button");
    b.type = "button";
    b.id = id;
    b.textContent = text;
    b.addEventListener("click", () => this.update(next()));
    return b;
  }

  private headOf(e: Event): number {
    const el = (e.target as Element).closest<HTMLElement>(".head-toggle");
    return el ? Number(el.dataset["head"]) : -1;
  }

  private update(next: boolean[]): void {
    this.active = next;
    this.sync();
    this.onChange(next.slice());
  }

  /** Sets the active heads without a change callback (a deep link, before the view paints). */
  setActive(next: boolean[]): void {
    if (next.length !== this.active.length || !next.some(Boolean)) return;
    this.active = next.slice();
    this.sync();
  }

  /** Only head `h` active (keyboard ←/→). */
  solo(h: number): void {
    this.update(this.active.map((_, i) => i === h));
  }

  get(): boolean[] {
    return this.active.slice();
  }

  /** Resizes to `numHeads`, keeping the current selection when the count is unchanged. */
  setCount(numHeads: number): boolean[] {
    if (numHeads !== this.active.length) {
      this.active = Array.from({ length: numHeads }, () => true);
      this.boxes.replaceChildren(
        ...this.active.map((_, h) => {
          const box = document.createElement("div");
          box.className = "head-toggle";
          box.dataset["head"] = String(h);
          box.style.setProperty("--head-color", headColor(h));
          box.setAttribute("role", "switch");
          return box;
        }),
      );
      this.setTitles(null);
    }
    this.sync();
    return this.active.slice();
  }

  /** How heads are named in tooltips (the model's numbering). */
  setLabel(label: (h: number) => string): void {
    this.label = label;
    this.setTitles(this.entropy);
  }

  /** Tooltips: the head's name and, when known, its mean attention entropy at this step and layer. */
  setTitles(entropy: ArrayLike<number> | null): void {
    this.entropy = entropy;
    this.boxes.querySelectorAll<HTMLElement>(".head-toggle").forEach((box, h) => {
      const e = entropy ? entropy[h] : undefined;
      box.setAttribute("aria-label", this.label(h));
      box.dataset["label"] = this.label(h);
      box.title =
        this.label(h) +
        (e === undefined || Number.isNaN(e) ? "" : ` · mean entropy ${e.toFixed(3)} nats`) +
        "\nclick: toggle · double-click: solo";
    });
  }

  private sync(): void {
    this.boxes.querySelectorAll<HTMLElement>(".head-toggle").forEach((box, h) => {
      box.classList.toggle("off", !this.active[h]);
      box.setAttribute("aria-checked", String(!!this.active[h]));
    });
  }
}
