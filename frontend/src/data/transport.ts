// Where the app's requests go. In TensorBoard: the plugin's routes, over HTTP (URLs stay relative, see api.ts). In a
// notebook output: the route responses embedded in the output (notebook/payload.ts) — without touching
// window.fetch, which belongs to the notebook page. Every route request of the app goes through `request`.

export type Transport = (url: string) => Promise<Response>;

let transport: Transport = (url) => fetch(url);

export function request(url: string): Promise<Response> {
  return transport(url);
}

/** Replaces the transport of this bundle instance (one per notebook view: shell/page.ts). */
export function setTransport(t: Transport): void {
  transport = t;
}
