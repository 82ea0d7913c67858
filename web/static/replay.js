// The replay page: one recording of a channel, played as VOD (from the
// start, seekable) with hls.js where Media Source Extensions exist, the
// browser's own HLS elsewhere.
const video = document.getElementById("video");
const status = document.getElementById("replay-status");
const { channel, recording } = document.body.dataset;
const src = `/vod/${encodeURIComponent(channel)}/${encodeURIComponent(recording)}/index.m3u8`;

// A read-only view for tests and curious viewers.
const hook = { channel, recording, errors: [], fatal: [] };
window.__onair = hook;

function say(text) {
  status.textContent = text;
}

if (window.Hls && window.Hls.isSupported()) {
  const hls = new window.Hls({ enableWorker: true });
  hls.on(window.Hls.Events.ERROR, (_, data) => {
    hook.errors.push(data.details);
    if (!data.fatal) return;
    hook.fatal.push(data.details);
    say(data.response && data.response.code === 404 ? "This replay is not available." : "The replay cannot be played right now.");
  });
  hls.loadSource(src);
  hls.attachMedia(video);
} else if (video.canPlayType("application/vnd.apple.mpegurl")) {
  video.src = src;
} else {
  say("This browser cannot play HLS video.");
}
video.addEventListener("playing", () => say(""));
