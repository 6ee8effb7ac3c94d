// The live notebook view (tb_attention/notebook/widget.py, the optional `anywidget` extra): the same app, mounted
// as in a static output (mount.ts), but each route request is a comm message to the kernel, answered with the
// response's bytes as a binary buffer, so steps are read from the logdir when the view asks for them.

import type { Transport } from "../data/transport";
import { mountWith } from "./mount";
import type { Options } from "./payload";

/** The part of anywidget's model this view uses. */
export interface WidgetModel {
  get(name: string): unknown;
  send(content: unknown, callbacks?: unknown, buffers?: ArrayBuffer[]): void;
  on(event: string, callback: (content: unknown, buffers?: DataView[]) => void): void;
}

interface Reply {
  type: string;
  id: number;
  status: number;
  content_type: string;
}

/** How long a request waits for the kernel's reply (a long probe's top-k is computed on request: seconds). */
export const REPLY_MS = 120_000;

/** Requests as comm messages {type: "request", id, url}; replies {type: "response", id, status, content_type}. */
export function commTransport(model: WidgetModel): Transport {
  const pending = new Map<number, (r: Response) => void>();
  let next = 1;
  model.on("msg:custom", (content, buffers) => {
    const reply = content as Reply;
    if (!reply || reply.type !== "response") return;
    const done = pending.get(reply.id);
    if (!done) return;
    pending.delete(reply.id);
    const b = buffers?.[0];
    const bytes = b ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength) : new Uint8Array(0);
    done(new Response(bytes.slice(), { status: reply.status, headers: { "Content-Type": reply.content_type } }));
  });
  return (url) =>
    new Promise<Response>((resolve) => {
      const id = next++;
      // A kernel that stopped (restarted, interrupted, shut down) never answers: the view must not wait forever.
      const timer = setTimeout(() => {
        if (!pending.delete(id)) return;
        const text = `no answer from the kernel in ${REPLY_MS / 1000} s: is it still running? (run the cell again)`;
        resolve(new Response(text, { status: 504, statusText: "Gateway Timeout" }));
      }, REPLY_MS);
      pending.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      model.send({ type: "request", id, url });
    });
}

/** anywidget's render(): called with this module's own instance for each view (widget.py's loader imports the
 * bundle afresh per view, so views keep apart as static outputs do). */
export function widgetRender(model: WidgetModel, el: HTMLElement, source: Uint8Array): void {
  const host = document.createElement("div");
  host.className = "tb-attention";
  el.appendChild(host);
  const app = mountWith(host, commTransport(model), (model.get("options") ?? {}) as Options, () =>
    Promise.resolve(source),
  );
  // The kernel re-reads the logdir on Reload: new steps of a run still training appear.
  const reload = host.shadowRoot?.querySelector<HTMLElement>("#reload-button");
  if (reload) reload.style.display = "";
  void app;
}
