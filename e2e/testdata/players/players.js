// The page e2e/players_test.go opens in headless Chromium: it embeds one web
// player the way a site does (script tags from the site's own host, the stream
// from another origin), plays the HLS URL it is given, and records in
// window.__play what a viewer would see: when the picture started, how much of
// the wall time it advanced, stalls, errors and its distance behind live.
//
// Query: ?player=hlsjs|shaka|videojs&lib=<npm package dir under /lib/>&config=lowlatency|default&src=<HLS URL>
"use strict";

const params = new URLSearchParams(location.search);
const video = document.getElementById("video");

const state = (window.__play = {
  player: params.get("player"),
  config: params.get("config") || "default",
  version: "",
  engine: "",
  firstFrameMs: null, // performance.now() (ms after navigation start) when a first frame was presented
  startMs: null, // when currentTime first advanced past that frame: playback started
  startCt: null,
  wall: 0, // seconds of wall time since the first frame
  played: 0, // seconds currentTime advanced by playing since the first frame (seeks and jumps excluded)
  jumped: 0, // seconds currentTime moved by seeks or jumps since the first frame
  seeks: 0, // seeks after the first frame
  waits: 0, // "waiting" events after the first frame (stalls)
  longestStall: 0, // longest wall time in seconds without currentTime advancing, after the first frame
  behind: [], // seconds behind live, sampled every 500 ms after the start
  behindMissing: 0, // samples where the player had no date for its position
  minRate: null, // lowest and highest playbackRate seen after the first frame
  maxRate: null,
  droppedFrames: 0, // decoded frames the browser dropped (getVideoPlaybackQuality)
  totalFrames: 0,
  holes: [], // gaps between buffered ranges of each SourceBuffer: {type, start, end}
  libMs: null, // when the player's script had loaded
  errors: [], // every error the player reported (the last 100)
  fatal: [], // errors the player gave up on
  exceptions: [], // uncaught page exceptions
});

function record(entry) {
  entry.atMs = Math.round(performance.now());
  state.errors.push(entry);
  if (state.errors.length > 100) state.errors.shift();
  if (entry.fatal) state.fatal.push(entry);
}

window.addEventListener("error", (e) => state.exceptions.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => state.exceptions.push(String(e.reason && (e.reason.message || e.reason))));

// The media element's own error stops playback whatever the player does next.
video.addEventListener("error", () =>
  record({ type: "media-element", details: video.error ? `${video.error.code} ${video.error.message}` : "", fatal: true }),
);

// Every SourceBuffer any player creates, to find holes in what it appended
// (the media element only shows the intersection of audio and video).
const sourceBuffers = [];
for (const MS of [window.MediaSource, window.ManagedMediaSource]) {
  if (!MS) continue;
  const add = MS.prototype.addSourceBuffer;
  MS.prototype.addSourceBuffer = function (type) {
    const sb = add.call(this, type);
    sourceBuffers.push({ type, sb });
    return sb;
  };
}

function recordHoles() {
  for (const { type, sb } of sourceBuffers) {
    let r;
    try {
      r = sb.buffered;
    } catch (e) {
      continue; // removed from its MediaSource
    }
    for (let i = 1; i < r.length; i++) {
      const start = Math.round(r.end(i - 1) * 1000) / 1000;
      const end = Math.round(r.start(i) * 1000) / 1000;
      if (!state.holes.some((h) => h.type === type && h.start === start && h.end === end)) {
        state.holes.push({ type, start, end });
        if (state.holes.length > 50) state.holes.shift();
      }
    }
  }
}

function load(tag, attrs) {
  return new Promise((resolve, reject) => {
    const el = document.createElement(tag);
    Object.assign(el, attrs);
    el.onload = () => {
      if (tag === "script") state.libMs = performance.now();
      resolve();
    };
    el.onerror = () => reject(new Error(`cannot load ${attrs.src || attrs.href}`));
    document.head.appendChild(el);
  });
}

// playerDate returns the wall-clock time (from EXT-X-PROGRAM-DATE-TIME) of the
// frame on screen, by the player's own mapping; null when it has none.
let playerDate = () => null;

async function startHlsjs(lib, src, config) {
  await load("script", { src: `/lib/${lib}/dist/hls.min.js` });
  const Hls = window.Hls;
  state.version = Hls.version;
  state.engine = "hls.js";
  if (!Hls.isSupported()) throw new Error("hls.js: Media Source Extensions are not supported");
  const hls = new Hls(config === "lowlatency" ? { lowLatencyMode: true } : undefined);
  window.__hls = hls;
  hls.on(Hls.Events.ERROR, (_, d) =>
    record({
      type: d.type,
      details: d.details,
      fatal: !!d.fatal,
      url: d.url || (d.frag && d.frag.url) || (d.context && d.context.url) || "",
      status: d.response ? d.response.code : undefined,
      reason: d.reason || (d.error && d.error.message) || "",
    }),
  );
  hls.attachMedia(video);
  hls.loadSource(src);
  playerDate = () => hls.playingDate;
}

async function startShaka(lib, src, config) {
  await load("script", { src: `/lib/${lib}/dist/shaka-player.compiled.js` });
  const shaka = window.shaka;
  shaka.polyfill.installAll();
  state.version = shaka.Player.version;
  state.engine = "shaka";
  if (!shaka.Player.isBrowserSupported()) throw new Error("shaka: browser not supported");
  const player = new shaka.Player();
  window.__shaka = player;
  player.addEventListener("error", (e) => {
    const d = e.detail || {};
    record({
      type: `category ${d.category}`,
      details: `code ${d.code}`,
      fatal: d.severity === shaka.util.Error.Severity.CRITICAL,
      reason: String(d.message || ""),
    });
  });
  await player.attach(video);
  if (config === "lowlatency") player.configure({ streaming: { lowLatencyMode: true } });
  playerDate = () => player.getPlayheadTimeAsDate();
  try {
    await player.load(src);
  } catch (e) {
    record({ type: "load", details: `code ${e.code}`, fatal: true, reason: String(e.message || e) });
  }
}

async function startVideojs(lib, src) {
  await load("link", { rel: "stylesheet", href: `/lib/${lib}/dist/video-js.min.css` });
  await load("script", { src: `/lib/${lib}/dist/video.min.js` });
  const videojs = window.videojs;
  state.version = videojs.VERSION;
  const player = videojs(video, { muted: true, autoplay: true, controls: true, liveui: true });
  window.__videojs = player;
  player.on("error", () => {
    const e = player.error() || {};
    record({ type: "videojs", details: `code ${e.code}`, fatal: true, reason: String(e.message || "") });
  });
  player.src({ src, type: "application/x-mpegURL" });
  const tech = () => player.tech({ IWillNotUseThisInPlugins: true });
  player.ready(() => {
    const t = tech();
    state.engine = t && t.vhs ? "vhs" : t ? `video.js ${t.name_} without VHS` : "none";
    if (t && t.el() !== video) state.exceptions.push("video.js plays in another element than the page's video");
  });
  // VHS has no public position-to-date call that answers synchronously; its
  // segments carry the program date-time (dateTimeObject) and, once buffered,
  // their start on the player's timeline.
  playerDate = () => {
    const t = tech();
    const media = t && t.vhs && t.vhs.playlists && t.vhs.playlists.media();
    if (!media || !media.segments) return null;
    const ct = player.currentTime();
    let anchor = null;
    for (const s of media.segments) {
      if (s.dateTimeObject && typeof s.start === "number" && s.start <= ct) anchor = s;
    }
    return anchor ? new Date(anchor.dateTimeObject.getTime() + (ct - anchor.start) * 1000) : null;
  };
}

// --- measuring -------------------------------------------------------------
// From the first presented frame on, every 100 ms: how far currentTime moved
// against the wall clock. Every 500 ms after the start: the distance behind live.

let last = null; // the previous sample, from the first frame on
let lastAdvanceMs = 0;
let seekedSinceSample = false;
let ticks = 0;

video.requestVideoFrameCallback(() => {
  const now = performance.now();
  state.firstFrameMs = now;
  last = { now, ct: video.currentTime };
  lastAdvanceMs = now;
});

video.addEventListener("seeking", () => {
  if (state.firstFrameMs !== null) {
    state.seeks++;
    seekedSinceSample = true;
  }
});
video.addEventListener("waiting", () => state.firstFrameMs !== null && state.waits++);

function sample() {
  if (last === null) return;
  const now = performance.now();
  const ct = video.currentTime;
  const dWall = (now - last.now) / 1000;
  const dCt = ct - last.ct;
  // Playing moves currentTime by about the wall time (a catching-up player by
  // up to its playback rate); anything else is a seek or a jump over a gap.
  if (!seekedSinceSample && dCt >= 0 && dCt <= dWall * 2 + 0.05) state.played += dCt;
  else state.jumped += dCt;
  if (dCt > 0) {
    lastAdvanceMs = now;
    if (state.startMs === null && !seekedSinceSample) {
      state.startMs = now;
      state.startCt = ct;
    }
  }
  state.longestStall = Math.max(state.longestStall, (now - lastAdvanceMs) / 1000);
  seekedSinceSample = false;
  last = { now, ct };
  state.wall = (now - state.firstFrameMs) / 1000;
  const rate = video.playbackRate;
  state.minRate = state.minRate === null ? rate : Math.min(state.minRate, rate);
  state.maxRate = state.maxRate === null ? rate : Math.max(state.maxRate, rate);
  const every500ms = ++ticks % 5 === 0;
  if (every500ms) {
    recordHoles();
    const q = video.getVideoPlaybackQuality();
    state.droppedFrames = q.droppedVideoFrames;
    state.totalFrames = q.totalVideoFrames;
  }
  if (state.startMs !== null && every500ms) {
    let d = null;
    try {
      d = playerDate();
    } catch (e) {
      d = null;
    }
    if (d instanceof Date && !isNaN(d.getTime())) state.behind.push(Math.round(Date.now() - d.getTime()) / 1000);
    else state.behindMissing++;
  }
}
setInterval(sample, 100);

async function main() {
  const src = params.get("src");
  const lib = params.get("lib");
  switch (state.player) {
    case "hlsjs":
      return startHlsjs(lib, src, state.config);
    case "shaka":
      return startShaka(lib, src, state.config);
    case "videojs":
      return startVideojs(lib, src);
    default:
      throw new Error(`unknown player ${state.player}`);
  }
}

main().catch((e) => record({ type: "page", details: String(e.message || e), fatal: true }));

// requests lists the first requests to the stream's origin, for a start that
// took too long: [path, start, end] in ms after navigation start.
window.__requests = () => {
  const origin = new URL(params.get("src")).origin;
  return performance
    .getEntriesByType("resource")
    .filter((e) => e.name.startsWith(origin))
    .slice(0, 20)
    .map((e) => [e.name.slice(origin.length), Math.round(e.startTime), Math.round(e.responseEnd)]);
};
