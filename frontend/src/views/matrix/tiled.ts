// The matrix view beyond 1,024 × 1,024 weights per head, and for every "qk" layer: the head as a tile pyramid
// (draw/tileMap.ts) fed by the `tile` route, in probe positions (token subsets do not apply: tiles are pooled on the
// server). The first paint is the coarsest tile, one request; finer tiles follow for the window on screen.

import { TileMap, type TileStats, type TileWindow } from "../../draw/tileMap";
import type { Scale } from "../../draw/colormap";
import { layerHeadLabel } from "../../data/labels";
import { isQkLayer } from "../../data/scale";
import { lodLoaders } from "../../shell/lodLoaders";
import { page } from "../../shell/page";
import type { SharedState } from "../../shell/view";
import { installScaleCss } from "../../draw/scaleCss";

declare global {
  interface Window {
    /** The matrix view's tile pyramid (frontend/VIEWS.md): level, tiles painted, settle times, cells. */
    __tbaTiles?: TileStats & {
      cellAt(i: number, j: number): ReturnType<TileMap["cellAt"]>;
      zoomTo(w: TileWindow): void;
      window(): TileWindow;
    };
  }
}

export class TiledMatrix {
  readonly map = new TileMap("matrix");
  readonly root = this.map.root;

  constructor() {
    installScaleCss();
    const map = this.map;
    page().hooks.__tbaTiles = Object.assign(map.stats, {
      cellAt: (i: number, j: number) => map.cellAt(i, j),
      zoomTo: (w: TileWindow) => map.zoomTo(w),
      window: () => map.window(),
    });
  }

  /** Draws head `h` of the state's layer; resolves once the coarsest tile is painted. Returns the summary. */
  async show(
    state: SharedState,
    h: number,
    scale: Scale,
    zoom: TileWindow | null,
    note: string,
  ): Promise<string | null> {
    const { probe, step, layer } = state;
    const raw = await lodLoaders.manifest(probe, step);
    const src = {
      key: JSON.stringify([probe.run, probe.tag, step, layer, h]),
      Q: raw.query_len,
      K: raw.key_len,
      left: raw.tokens,
      right: raw.key_tokens ?? raw.tokens,
      load: (lv: number, r: number, c: number) => lodLoaders.tile(probe, step, layer, h, lv, r, c),
    };
    const vh = window.innerHeight || 900;
    const size = Math.max(320, Math.min(720, (window.innerWidth || 1280) - 420, vh - 260));
    await this.map.set(src, scale, size);
    if (zoom) this.map.zoomTo(zoom);
    const m = state.manifest;
    const subset = m.kept && (m.kept.q || m.kept.k) ? " · the token subset is not applied to tiles" : "";
    return (
      (note ? `(${note}) · ` : "") +
      `${layerHeadLabel(raw, layer, h)} · ${raw.query_len.toLocaleString("en-US")} × ` +
      `${raw.key_len.toLocaleString("en-US")} as tiles` +
      (isQkLayer(raw, layer) ? " rebuilt from the stored queries and keys" : "") +
      subset +
      " · wheel to zoom, drag to pan, hover for values"
    );
  }
}
