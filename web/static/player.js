// The video player: hls.js in low-latency mode where Media Source Extensions
// exist, the browser's own HLS (Safari on iOS) elsewhere. It knows nothing
// about channels; the watch page tells it when to start and stop.

/** hls.js settings for low-latency live playback. */
const HLS_CONFIG = {
  lowLatencyMode: true,
  // The target delay comes from the playlist's PART-HOLD-BACK (the server
  // knows its part duration); when the player falls behind, it plays up to
  // 1.2x faster to catch up instead of jumping.
  maxLiveSyncPlaybackRate: 1.2,
  liveDurationInfinity: true,
  backBufferLength: 30,
  // A stall raises the target delay by this much (capped by hls.js at one
  // target duration), so a slow network settles instead of stalling again.
  liveSyncOnStallIncrease: 0.5,
  enableWorker: true,
};

const STALL_RESTART_MS = 12000;

export class Player {
  /**
   * @param {HTMLVideoElement} video
   * @param {{onStatus?: (status: string, detail?: object) => void, hook?: object}} opts
   *   onStatus receives "starting", "playing", "waiting", "blocked" (autoplay
   *   refused), "fatal" (the player gave up; the caller decides when to retry).
   */
  constructor(video, { onStatus = () => {}, hook = {} } = {}) {
    this.video = video;
    this.onStatus = onStatus;
    this.hook = hook;
    this.hls = null;
    this.url = "";
    this.running = false;
    this.mediaRecoveries = 0;
    this.lastTime = 0;
    this.lastProgress = 0;
    this.userPaused = false;

    const on = (type, fn) => video.addEventListener(type, fn);
    on("playing", () => {
      this.userPaused = false;
      if (this.running) this.onStatus("playing");
    });
    on("waiting", () => this.running && this.onStatus("waiting"));
    on("timeupdate", () => {
      if (video.currentTime !== this.lastTime) {
        this.lastTime = video.currentTime;
        this.lastProgress = performance.now();
      }
    });
    on("pause", () => {
      // A pause we did not cause (the user's) stops the stall watchdog.
      if (this.running && !video.ended) this.userPaused = true;
    });
    on("error", () => {
      // With hls.js the element's own errors are reported through hls.js.
      if (this.running && !this.hls) this.fail({ type: "native", details: video.error?.message || "media error" });
    });
  }

  /** kind reports which engine would play: "hls.js", "native" or "" (none). */
  static kind(video) {
    const Hls = globalThis.Hls;
    if (Hls && Hls.isSupported()) return "hls.js";
    if (video.canPlayType("application/vnd.apple.mpegurl")) return "native";
    return "";
  }

  /** start plays url from the live edge, replacing whatever played before. */
  start(url) {
    this.stop();
    this.url = url;
    this.running = true;
    this.mediaRecoveries = 0;
    this.lastProgress = performance.now();
    this.userPaused = false;
    this.onStatus("starting");
    const kind = Player.kind(this.video);
    this.hook.engine = kind;
    if (kind === "hls.js") this.startHls(url);
    else if (kind === "native") {
      this.video.src = url;
      this.play();
    } else {
      this.running = false;
      this.onStatus("unsupported");
    }
  }

  startHls(url) {
    const Hls = globalThis.Hls;
    const hls = new Hls(HLS_CONFIG);
    this.hls = hls;
    this.hook.hlsVersion = Hls.version;
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (hls !== this.hls) return;
      const entry = {
        at: new Date().toISOString(),
        type: data.type,
        details: data.details,
        fatal: !!data.fatal,
        url: data.url || data.frag?.url || "",
        status: data.response?.code,
      };
      (this.hook.errors ||= []).push(entry);
      if (this.hook.errors.length > 200) this.hook.errors.shift();
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR && this.mediaRecoveries < 2) {
        this.mediaRecoveries++;
        hls.recoverMediaError();
        return;
      }
      this.fail(entry);
    });
    hls.on(Hls.Events.MANIFEST_PARSED, () => this.play());
    hls.attachMedia(this.video);
    hls.loadSource(url);
  }

  play() {
    const p = this.video.play();
    if (p && p.catch) {
      p.catch((err) => {
        if (err && err.name === "NotAllowedError" && this.running) this.onStatus("blocked");
      });
    }
  }

  fail(detail) {
    (this.hook.fatal ||= []).push(detail);
    this.stop();
    this.onStatus("fatal", detail);
  }

  /** stop ends playback and releases the engine. */
  stop() {
    this.running = false;
    if (this.hls) {
      const hls = this.hls;
      this.hls = null;
      hls.destroy();
    }
    if (this.video.getAttribute("src")) {
      this.video.removeAttribute("src");
      this.video.load();
    }
  }

  /** stalled reports whether a running player has made no progress for a while (and the user did not pause). */
  stalled(now = performance.now()) {
    return this.running && !this.userPaused && now - this.lastProgress > STALL_RESTART_MS;
  }

  /** latency is the delay behind the live edge in seconds, or null when unknown. */
  latency() {
    if (!this.running) return null;
    if (this.hls) {
      const l = this.hls.latency;
      return Number.isFinite(l) && l > 0 ? l : null;
    }
    const s = this.video.seekable;
    if (s && s.length) {
      const l = s.end(s.length - 1) - this.video.currentTime;
      return Number.isFinite(l) && l >= 0 ? l : null;
    }
    return null;
  }

  /** targetLatency is the delay hls.js aims for, or null. */
  targetLatency() {
    const t = this.hls?.targetLatency;
    return Number.isFinite(t) ? t : null;
  }

  /** wallClockDelay is now minus the program date-time being shown, in seconds, when the stream carries one. */
  wallClockDelay() {
    const d = this.hls?.playingDate;
    return d instanceof Date && !Number.isNaN(d.getTime()) ? (Date.now() - d.getTime()) / 1000 : null;
  }

  /** goLive jumps to the live edge (the target delay) and plays. */
  goLive() {
    if (!this.running) return;
    const v = this.video;
    let pos = this.hls ? this.hls.liveSyncPosition : null;
    if (pos == null && v.seekable && v.seekable.length) pos = v.seekable.end(v.seekable.length - 1) - 1;
    if (pos != null && Number.isFinite(pos)) v.currentTime = pos;
    this.userPaused = false;
    this.play();
  }
}
