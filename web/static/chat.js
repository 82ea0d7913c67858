// The chat connection: one WebSocket to /chat/{channel}, speaking the
// protocol in docs/chat-protocol.md, reconnecting with backoff.

const NO_RECONNECT = new Map([
  [1008, "You were disconnected (too slow, or too many connections from your address)."],
  [1009, "You were disconnected: a message was too large."],
  [4003, "You are banned from this chat."],
]);

export class ChatConnection {
  /**
   * @param {string} channel
   * @param {{onEvent: (ev: object) => void, onState: (state: string, detail?: string) => void}} handlers
   *   onEvent gets every server object; onState gets "connecting", "open",
   *   "retrying" (detail: seconds), "closed" (detail: why; no automatic retry).
   */
  constructor(channel, { onEvent, onState }) {
    this.url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/chat/${encodeURIComponent(channel)}`;
    this.onEvent = onEvent;
    this.onState = onState;
    this.ws = null;
    this.attempt = 0;
    this.refs = 0;
    this.timer = 0;
    this.stopped = false;
  }

  connect() {
    clearTimeout(this.timer);
    this.stopped = false;
    this.onState("connecting");
    // The display name and any moderator token go in a join message, never
    // in the URL, so they stay out of access logs.
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.addEventListener("open", () => {
      if (ws !== this.ws) return;
      this.attempt = 0;
      this.onState("open");
    });
    ws.addEventListener("message", (e) => {
      if (ws !== this.ws || typeof e.data !== "string") return;
      for (const line of e.data.split("\n")) {
        if (!line) continue;
        let ev;
        try {
          ev = JSON.parse(line);
        } catch {
          continue;
        }
        if (ev && typeof ev.type === "string") this.onEvent(ev);
      }
    });
    ws.addEventListener("close", (e) => {
      if (ws !== this.ws) return;
      this.ws = null;
      if (this.stopped) return;
      const why = NO_RECONNECT.get(e.code);
      if (why) {
        this.onState("closed", why);
        return;
      }
      // 1 s doubling to 30 s, with jitter.
      const base = Math.min(30, 2 ** this.attempt);
      const delay = base * (0.5 + Math.random() * 0.5);
      this.attempt++;
      this.onState("retrying", delay.toFixed(0));
      this.timer = setTimeout(() => this.connect(), delay * 1000);
    });
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** sendObject sends one client object; it returns false when not connected. */
  sendObject(obj) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  /** join sets the display name; token (optional) makes the connection a moderator. */
  join(name, token) {
    const msg = { type: "join", name };
    if (token) msg.token = token;
    return this.sendObject(msg);
  }

  /** send posts text; it returns the ref the answer will carry, or "" when not connected. */
  send(text) {
    const ref = `c${++this.refs}`;
    return this.sendObject({ type: "send", text, ref }) ? ref : "";
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.ws?.close(1000);
    this.ws = null;
  }
}
