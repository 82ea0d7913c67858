// The channel directory: live channels as cards, offline ones listed below,
// refreshed every few seconds from /api/v1/channels.
import { el, fetchJSON, liveFor, plural, channelState, resolution } from "./common.js";

const REFRESH_MS = 4000;
const THUMB_REFRESH_MS = 30000;

const liveList = document.getElementById("live");
const liveEmpty = document.getElementById("live-empty");
const offlineSection = document.getElementById("offline-section");
const offlineList = document.getElementById("offline");
const status = document.getElementById("dir-status");

const cards = new Map(); // channel name -> {li, parts, state}

function stateLabel(state) {
  switch (state) {
    case "live": return "Live";
    case "reconnecting": return "Reconnecting";
    case "taken_down": return "Taken down";
    default: return "Offline";
  }
}

function makeCard(name) {
  const thumb = el("div", { className: "thumb" });
  const placeholder = el("span", { className: "thumb-placeholder", "aria-hidden": "true" }, name.slice(0, 1).toUpperCase());
  thumb.append(placeholder);
  const badge = el("span", { className: "badge" });
  const title = el("span", { className: "card-title" });
  const viewers = el("span", { className: "viewers" });
  const since = el("span", { className: "since" });
  const detail = el("span", { className: "detail" });
  const link = el("a", { className: "card-link", href: `/watch/${encodeURIComponent(name)}` },
    thumb, el("span", { className: "card-body" }, el("span", { className: "card-top" }, badge, title),
      el("span", { className: "card-meta" }, viewers, since, detail)));
  const li = el("li", { className: "card", dataset: { channel: name } }, link);
  return { li, thumb, placeholder, img: null, thumbAt: 0, thumbURL: "", badge, title, viewers, since, detail, link };
}

function updateThumb(card, ch, state, now) {
  const url = state === "live" || state === "reconnecting" ? ch.thumbnail : "";
  if (!url) {
    card.img?.remove();
    card.img = null;
    card.thumbURL = "";
    return;
  }
  if (card.img && card.thumbURL === url && now - card.thumbAt < THUMB_REFRESH_MS) return;
  card.thumbURL = url;
  card.thumbAt = now;
  const img = new Image();
  img.alt = "";
  img.decoding = "async";
  img.addEventListener("load", () => {
    card.img?.remove();
    card.img = img;
    card.thumb.append(img);
  }, { once: true });
  img.addEventListener("error", () => { /* keep the placeholder (or the previous image) */ }, { once: true });
  // The query only defeats the browser cache for a fresh frame; it is not an HLS URL.
  img.src = `${url}${url.includes("?") ? "&" : "?"}t=${Math.floor(now / THUMB_REFRESH_MS)}`;
}

function update(card, ch, now) {
  const state = channelState(ch);
  const title = ch.title || ch.name;
  card.li.dataset.state = state;
  card.badge.textContent = stateLabel(state);
  card.badge.dataset.state = state;
  card.title.textContent = title;
  const live = state === "live" || state === "reconnecting";
  card.viewers.textContent = live ? plural(ch.viewers, "viewer") : "";
  card.since.textContent = live && ch.since ? `live for ${liveFor(ch.since, now)}` : "";
  card.detail.textContent = state === "taken_down" ? (ch.reason || "") : (live ? resolution(ch) : "");
  card.link.setAttribute("aria-label",
    [title, stateLabel(state), card.viewers.textContent, card.since.textContent].filter(Boolean).join(", "));
  updateThumb(card, ch, state, now);
}

function render(channels) {
  const now = Date.now();
  const seen = new Set();
  const live = [];
  const offline = [];
  for (const ch of channels) {
    if (!ch || typeof ch.name !== "string") continue;
    seen.add(ch.name);
    let card = cards.get(ch.name);
    if (!card) {
      card = makeCard(ch.name);
      cards.set(ch.name, card);
    }
    update(card, ch, now);
    const state = channelState(ch);
    (state === "live" || state === "reconnecting" ? live : offline).push({ ch, card });
  }
  for (const [name, card] of cards) {
    if (!seen.has(name)) {
      card.li.remove();
      cards.delete(name);
    }
  }
  live.sort((a, b) => (b.ch.viewers || 0) - (a.ch.viewers || 0) || a.ch.name.localeCompare(b.ch.name));
  offline.sort((a, b) => a.ch.name.localeCompare(b.ch.name));
  for (const { card } of live) liveList.append(card.li); // append moves existing nodes into order
  for (const { card } of offline) offlineList.append(card.li);
  liveEmpty.hidden = live.length > 0;
  offlineSection.hidden = offline.length === 0;
}

async function refresh() {
  try {
    const data = await fetchJSON("/api/v1/channels");
    render((data && data.channels) || []);
    status.textContent = "";
    document.body.dataset.loaded = "true";
  } catch (err) {
    status.textContent = "Could not reach the server; retrying…";
    console.warn("directory refresh:", err);
  } finally {
    setTimeout(refresh, document.hidden ? REFRESH_MS * 3 : REFRESH_MS);
  }
}

refresh();
