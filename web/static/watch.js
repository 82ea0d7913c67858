// The watch page: ties the channel's API state, the player and the chat
// together. The API (polled, and re-read at once when chat announces a
// stream event) decides whether the player should run; the player reports
// how playback goes.
import { fetchJSON, channelURL, channelState, liveFor, plural, resolution, bitrate } from "./common.js";
import { Player } from "./player.js";
import { ChatView } from "./chat-ui.js";
import { HealthPanel, takeAdminToken } from "./health-ui.js";
import { ReplayList } from "./replays.js";

const POLL_MS = 3000;
const RETRY_MS = 2000;
const BEHIND_SLACK_S = 2; // "behind live" once this much past the target delay

const channel = document.body.dataset.channel;
const video = document.getElementById("video");
const overlay = document.getElementById("overlay");
const overlayTitle = document.getElementById("overlay-title");
const overlayText = document.getElementById("overlay-text");
const badge = document.getElementById("live-badge");
const goLiveBtn = document.getElementById("go-live");
const meta = document.getElementById("meta");
const titleEl = document.getElementById("channel-title");

// The one global: a read-only view for tests and curious viewers.
const hook = { channel, state: "loading", errors: [], fatal: [], engine: "", latency: null, transitions: [] };
window.__onair = hook;

let info = null; // last API answer for the channel
let apiState = "loading"; // live | reconnecting | offline | taken_down | unknown | error | loading
let takedownReason = "";
let playStatus = "idle"; // idle | starting | playing | waiting | blocked | fatal | unsupported
let retryAt = 0;
let pollTimer = 0;

const player = new Player(video, {
  hook,
  onStatus(status, detail) {
    playStatus = status;
    if (status === "fatal") {
      console.warn("player gave up:", detail);
      retryAt = Date.now() + RETRY_MS;
      schedulePoll(RETRY_MS);
    }
    render();
  },
});

function hlsURL() {
  // The API's URL is used as given: no per-viewer query, so a CDN can cache it.
  return (info && info.hls) || `/hls/${encodeURIComponent(channel)}/index.m3u8`;
}

function shouldPlay() {
  return apiState === "live" || apiState === "reconnecting";
}

function reconcile() {
  if (shouldPlay()) {
    if (player.stalled()) {
      console.warn("playback stalled; restarting the player");
      player.start(hlsURL());
    } else if (!player.running && playStatus !== "unsupported" && Date.now() >= retryAt) {
      player.start(hlsURL());
    }
  } else if (player.running || playStatus !== "idle") {
    player.stop();
    playStatus = "idle";
  }
}

function setOverlay(kind, title, text = "") {
  overlay.hidden = !kind;
  overlay.dataset.kind = kind || "";
  overlayTitle.textContent = title || "";
  overlayText.textContent = text;
}

function render() {
  // The page state a viewer sees, most important first.
  let state;
  if (apiState === "taken_down") state = "taken_down";
  else if (apiState === "unknown") state = "unknown";
  else if (apiState === "offline") state = "offline";
  else if (apiState === "reconnecting") state = "reconnecting";
  else if (apiState === "live") {
    if (playStatus === "playing") state = "playing";
    else if (playStatus === "waiting") state = "buffering";
    else if (playStatus === "blocked") state = "blocked";
    else if (playStatus === "unsupported") state = "unsupported";
    else state = "starting";
  } else if (apiState === "error") state = player.running ? "playing" : "error";
  else state = "loading";

  if (state !== hook.state) {
    hook.transitions.push({ at: Date.now(), state });
    if (hook.transitions.length > 100) hook.transitions.shift();
  }
  hook.state = state;
  document.body.dataset.state = state;

  const name = (info && info.title) || channel;
  switch (state) {
    case "playing":
      setOverlay("", "");
      break;
    case "buffering":
      setOverlay("buffering", "Buffering…");
      break;
    case "starting":
      setOverlay("loading", "Starting the stream…");
      break;
    case "blocked":
      setOverlay("blocked", "Press play to start", "Your browser did not start the video by itself.");
      break;
    case "reconnecting":
      setOverlay("reconnecting", "Reconnecting…", `${name} lost its connection; playback continues when it is back.`);
      break;
    case "offline":
      setOverlay("offline", "Offline", `${name} is not live right now. This page starts playing as soon as it is.`);
      break;
    case "taken_down":
      setOverlay("taken_down", "This stream was taken down", takedownReason ? `Reason: ${takedownReason}` : "");
      break;
    case "unknown":
      setOverlay("unknown", "No such channel", `There is no channel called “${channel}”.`);
      break;
    case "unsupported":
      setOverlay("error", "This browser cannot play the stream", "It supports neither Media Source Extensions nor HLS.");
      break;
    case "error":
      setOverlay("error", "Cannot reach the server", "Retrying…");
      break;
    default:
      setOverlay("loading", "Loading…");
  }
  goLiveBtn.disabled = !player.running;
  updateBadge(state);
  titleEl.textContent = name;
  document.title = `${name} · onair`;
}

function updateBadge(state) {
  const latency = player.latency();
  hook.latency = latency;
  hook.targetLatency = player.targetLatency();
  hook.wallClockDelay = player.wallClockDelay();
  let text;
  let cls = state;
  if (state === "playing" || state === "buffering") {
    const target = player.targetLatency() ?? 3;
    const behind = latency != null && latency > target + BEHIND_SLACK_S;
    cls = behind ? "behind" : "live";
    text = latency == null ? "LIVE" : `LIVE · ${latency.toFixed(1)} s behind`;
  } else {
    text = {
      reconnecting: "RECONNECTING",
      offline: "OFFLINE",
      taken_down: "TAKEN DOWN",
      unknown: "UNKNOWN",
      starting: "STARTING",
      blocked: "LIVE",
    }[state] || "…";
  }
  if (badge.textContent !== text) badge.textContent = text;
  badge.dataset.state = cls;
  badge.title = latency == null ? "" : `Delay behind the live edge: ${latency.toFixed(2)} s`;
}

function updateMeta() {
  const live = shouldPlay();
  const parts = [];
  if (info && live) {
    parts.push(plural(info.viewers, "viewer"));
    if (info.since) parts.push(`live for ${liveFor(info.since)}`);
    const res = resolution(info);
    if (res) parts.push(res);
    const br = bitrate(info);
    if (br) parts.push(br);
  }
  meta.textContent = parts.join(" · ");
}

async function poll() {
  clearTimeout(pollTimer);
  try {
    const ch = await fetchJSON(channelURL(channel));
    if (ch === null) {
      info = null;
      apiState = "unknown";
    } else {
      info = ch;
      apiState = channelState(ch);
      if (apiState === "taken_down") takedownReason = ch.reason || takedownReason;
      else takedownReason = "";
    }
  } catch (err) {
    console.warn("channel poll:", err);
    apiState = "error";
  }
  hook.apiState = apiState;
  reconcile();
  updateMeta();
  render();
  schedulePoll(POLL_MS);
}

function schedulePoll(ms) {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(poll, document.hidden && !player.running ? ms * 3 : ms);
}

goLiveBtn.addEventListener("click", () => player.goLive());
overlay.addEventListener("click", () => {
  if (playStatus === "blocked") player.play();
});

document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target;
  if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t.isContentEditable) return;
  const k = e.key.toLowerCase();
  if (k === "l") player.goLive();
  else if (k === "m") video.muted = !video.muted;
  else if (k === "f") {
    if (document.fullscreenElement) document.exitFullscreen();
    else video.requestFullscreen?.();
  } else if (k === "k" || (k === " " && t === document.body)) {
    if (video.paused) player.play();
    else video.pause();
  } else return;
  e.preventDefault();
});

// The badge's delay figure moves while playing; refresh it twice a second.
setInterval(() => {
  if (player.running) render();
}, 500);

// Before the chat view takes "#mod=": "#admin=" is read and removed first.
const adminToken = takeAdminToken();

// The channel's replays, read again when a broadcast starts or ends.
const replays = new ReplayList(document.getElementById("replays"), channel);
replays.start();

new ChatView(channel, {
  hook,
  onSystem(ev) {
    if (ev.kind === "taken_down") {
      takedownReason = ev.reason || takedownReason;
      apiState = "taken_down";
      reconcile();
      render();
    }
    if (ev.kind === "live" || ev.kind === "offline" || ev.kind === "taken_down") {
      retryAt = 0;
      poll(); // the API is the source of truth; re-read it now
      replays.refresh();
    }
  },
});

// The streamer's panel: only with a moderator or admin token in this tab.
new HealthPanel(channel, { hook, adminToken });

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) poll();
});

poll();
