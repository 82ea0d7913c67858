// Small helpers shared by the pages. Everything a user or the API supplies
// goes into the page as text (textContent), never as HTML.

/** el creates an element; props are assigned as properties, children appended. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("aria-") || key === "role") node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child == null || child === false) continue;
    node.append(child); // strings become Text nodes
  }
  return node;
}

/** fetchJSON GETs a same-origin JSON document; it resolves to null on 404. */
export async function fetchJSON(url, { signal } = {}) {
  const res = await fetch(url, { signal, cache: "no-store", headers: { Accept: "application/json" } });
  if (res.status === 404) return null;
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.json();
}

/** channelURL is the API URL of one channel. */
export function channelURL(name) {
  return `/api/v1/channels/${encodeURIComponent(name)}`;
}

/** formatDuration renders seconds as "42 s", "12 min", "1 h 05 min". */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  return `${h} h ${String(m % 60).padStart(2, "0")} min`;
}

/** liveFor renders how long ago an RFC 3339 time was, or "" when unknown. */
export function liveFor(since, now = Date.now()) {
  const t = Date.parse(since || "");
  return Number.isNaN(t) ? "" : formatDuration((now - t) / 1000);
}

/** plural renders "1 viewer" / "3 viewers". */
export function plural(n, word) {
  const count = Number(n) || 0;
  return `${count.toLocaleString()} ${word}${count === 1 ? "" : "s"}`;
}

/** channelState normalises the API's state field, deriving it from "live" for older servers. */
export function channelState(ch) {
  if (!ch) return "unknown";
  if (ch.state) return ch.state;
  return ch.live ? "live" : "offline";
}

/** resolution renders "1280×720" or "". */
export function resolution(ch) {
  return ch && ch.width && ch.height ? `${ch.width}×${ch.height}` : "";
}

/** bitrate renders "3.0 Mbit/s" or "". */
export function bitrate(ch) {
  if (!ch || !ch.bitrate) return "";
  const b = ch.bitrate;
  return b >= 1e6 ? `${(b / 1e6).toFixed(1)} Mbit/s` : `${Math.round(b / 1e3)} kbit/s`;
}
