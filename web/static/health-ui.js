// The streamer's "Stream health" panel on the watch page. It appears only
// in a tab that holds the channel's moderator token (#mod=TOKEN) or the admin
// token (#admin=TOKEN): it polls /api/v1/channels/{name}/health with it and
// shows the figures and each warning's advice. Normal viewers never see it.
// All API text goes into the page with textContent (via el()).
import { el, channelURL } from "./common.js";
import { modTokenKey } from "./chat-ui.js";

const POLL_MS = 5000;
const ADMIN_KEY = "onair.admin";

function storageGet(store, key) {
  try {
    return store.getItem(key) || "";
  } catch {
    return "";
  }
}

/**
 * takeAdminToken moves an "#admin=TOKEN" fragment into sessionStorage and
 * removes it from the address bar, keeping the rest of the fragment (a #mod=).
 * Call it before the chat view takes its own token.
 */
export function takeAdminToken() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("admin");
  if (token) {
    try {
      sessionStorage.setItem(ADMIN_KEY, token);
    } catch {
      /* storage disabled: the token lasts for this page only */
    }
    params.delete("admin");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
    return token;
  }
  return storageGet(sessionStorage, ADMIN_KEY);
}

function mbit(bps) {
  if (!bps) return "0";
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(1)} Mbit/s` : `${Math.round(bps / 1e3)} kbit/s`;
}

function secs(v) {
  return `${Number(v || 0).toFixed(1)} s`;
}

/** figures renders a report's numbers as [label, value] pairs. */
function figures(r) {
  const out = [];
  const v = r.video;
  if (v) {
    out.push(["Video", [v.codec.toUpperCase(), v.profile, v.level && `level ${v.level}`, v.width && `${v.width}×${v.height}`].filter(Boolean).join(" · ")]);
    out.push(["Frame rate", `${Number(v.fps || 0).toFixed(1)} fps`]);
    const k = v.keyframe_interval;
    out.push(["Keyframe interval", `${secs(k.avg)} (${secs(k.min)}–${secs(k.max)})`]);
    const b = v.bitrate;
    out.push(["Video bitrate", `${mbit(b.avg)} (${mbit(b.min)}–${mbit(b.max)})`]);
  }
  const a = r.audio;
  out.push(["Audio", a ? [a.codec.toUpperCase(), a.profile, a.sample_rate && `${a.sample_rate / 1000} kHz`, mbit(a.bitrate)].filter(Boolean).join(" · ") : "none"]);
  out.push(["Timestamp jumps", String(r.timestamp_jumps)]);
  out.push(["Dropped frames", String(r.dropped_frames)]);
  out.push(["Behind real time", secs(r.late_seconds)]);
  return out;
}

/** HealthPanel polls the health API with the tab's token and renders the panel. */
export class HealthPanel {
  constructor(channel, { hook = {}, adminToken = "" } = {}) {
    this.channel = channel;
    this.hook = hook;
    this.token = storageGet(sessionStorage, modTokenKey(channel)) || adminToken;
    this.root = document.getElementById("health");
    this.figs = document.getElementById("health-figures");
    this.list = document.getElementById("health-warnings");
    this.status = document.getElementById("health-status");
    this.timer = 0;
    if (!this.token || !this.root) return;
    this.root.hidden = false;
    hook.health = { state: "loading", codes: [] };
    this.poll();
  }

  async poll() {
    clearTimeout(this.timer);
    if (document.hidden) {
      // A background tab asks nothing; it catches up when shown again.
      this.timer = setTimeout(() => this.poll(), POLL_MS);
      return;
    }
    let again = true;
    try {
      const res = await fetch(`${channelURL(this.channel)}/health`, {
        cache: "no-store",
        headers: { Accept: "application/json", Authorization: `Bearer ${this.token}` },
      });
      const body = await res.json().catch(() => ({}));
      if (res.ok) this.render(body);
      else if (res.status === 401 || res.status === 403) {
        this.show("refused", `Stream health is not available with this link: ${body.error || res.status}.`);
        again = false;
      } else if (res.status === 409) this.show("offline", "Not live: figures appear once you stream.");
      else this.show("error", `Stream health: ${body.error || "HTTP " + res.status}`);
    } catch (err) {
      this.show("error", "Stream health: cannot reach the server; retrying.");
    }
    if (again) this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  show(state, text) {
    this.hook.health = { state, codes: [] };
    this.figs.replaceChildren();
    this.list.replaceChildren();
    this.status.textContent = text;
  }

  render(r) {
    const warnings = r.warnings || [];
    this.hook.health = { state: r.judged ? "judged" : "measuring", codes: warnings.map((w) => w.code) };
    this.figs.replaceChildren(...figures(r).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    this.list.replaceChildren(...warnings.map((w) => el("li", { dataset: { code: w.code } }, w.message)));
    if (!r.judged) this.status.textContent = `Measuring… ${secs(r.media_seconds)} of media so far.`;
    else if (warnings.length === 0) this.status.textContent = `No problems in the last ${r.window_seconds} s.`;
    else this.status.textContent = `${warnings.length} thing${warnings.length === 1 ? "" : "s"} to fix in OBS (last ${r.window_seconds} s):`;
  }
}
