// Messages from the TensorBoard page around the plugin's iframe (TensorBoard's experimental plugin API; its client
// library was never published, and the protocol is a few lines): the guest posts "experimental.bootstrap" with a
// MessagePort; the host then sends JSON {type, id, payload, error, isReply} and waits for a reply with the same id.
// We only need "data reloaded" (TensorBoard's auto-reload timer or its reload button) to pick up new steps.

export function onHostReload(callback: () => void): void {
  if (window.parent === window) return; // opened on its own (tests, snapshots): no host
  const channel = new MessageChannel();
  channel.port1.onmessage = (event: MessageEvent) => {
    let message: { type?: string; id?: number; isReply?: boolean };
    try {
      message = JSON.parse(String(event.data)) as typeof message;
    } catch {
      return;
    }
    if (message.isReply) return;
    if (message.type === "experimental.DataReloaded") callback();
    channel.port1.postMessage(
      JSON.stringify({ type: message.type, id: message.id, payload: null, error: null, isReply: true }),
    );
  };
  window.parent.postMessage("experimental.bootstrap", "*", [channel.port2]);
}
