// Token search: highlights matching tokens of the active view (Enter: scroll to the next one); with "only these
// queries" the shell also narrows the queries to the matches (data/tokenFilter.ts queryFilter), debounced while typing.

import { controlLabel } from "./widgets";
import { page } from "../shell/page";

/** An element whose tokens are mostly not in the DOM: `tbaSearch(text, scroll, next)` marks, jumps, counts. */
type Searchable = HTMLElement & { tbaSearch?: (text: string, scroll: boolean, next: boolean) => number };

export class SearchControl {
  readonly el: HTMLLabelElement;
  private readonly input = document.createElement("input");
  private readonly only = document.createElement("input");
  private readonly count = document.createElement("span");
  private index = 0;
  private timer = 0;

  constructor(
    private readonly root: () => HTMLElement | undefined,
    onFilterChange: () => void,
  ) {
    this.input.type = "search";
    this.input.id = "token-search";
    this.input.placeholder = "find token";
    this.input.size = 12;
    this.count.id = "search-count";
    this.only.type = "checkbox";
    this.only.id = "search-filter";
    this.only.title = "Show only the query tokens that match (all keys stay)";
    this.input.addEventListener("input", () => {
      this.highlight(true);
      if (this.only.checked) {
        clearTimeout(this.timer);
        this.timer = window.setTimeout(onFilterChange, 200);
      }
    });
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") this.highlight(true, true);
      if (e.key === "Escape") {
        this.input.value = "";
        this.highlight(false);
        if (this.only.checked) onFilterChange();
      }
    });
    this.only.addEventListener("change", onFilterChange);
    const only = document.createElement("label");
    only.className = "tba-filter";
    only.append(this.only, document.createTextNode("only these queries"));
    this.el = controlLabel("Search", this.input);
    this.el.append(only, this.count);
  }

  get text(): string {
    return this.input.value;
  }

  /** The text the queries are filtered by ("" when the filter is off). */
  get filter(): string {
    return this.only.checked ? this.input.value : "";
  }

  /** Marks `.token` / `.tba-token-label` elements of the active view that contain the text. */
  highlight(scroll: boolean, next = false): void {
    const q = this.input.value.trim().toLowerCase();
    const root = this.root();
    if (!root) return;
    // Views with virtual rows (most tokens not in the DOM) search their own tokens and scroll to the match.
    let virtual = 0;
    for (const el of Array.from(root.querySelectorAll<Searchable>("[data-tba-search]"))) {
      if (el.tbaSearch) virtual += el.tbaSearch(q, scroll, next);
    }
    const hits: HTMLElement[] = [];
    for (const el of Array.from(root.querySelectorAll<HTMLElement>(".token, .tba-token-label"))) {
      if (el.closest("[data-tba-search]")) continue;
      const hit = q !== "" && (el.textContent ?? "").toLowerCase().includes(q);
      el.classList.toggle("match", hit);
      if (hit) hits.push(el);
    }
    this.count.textContent = q ? `${hits.length + virtual} found` : "";
    page().root.dataset["searchHits"] = String(hits.length + virtual);
    if (!scroll || hits.length === 0 || virtual > 0) return;
    this.index = next ? (this.index + 1) % hits.length : 0;
    hits[this.index]?.scrollIntoView({ block: "center" });
  }
}
