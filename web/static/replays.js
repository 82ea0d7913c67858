// The channel's replays: its recordings, newest first, linking to the replay
// page. Shown under the player when there are any.
import { el, fetchJSON, channelURL, formatDuration } from "./common.js";

const REFRESH_MS = 60000;

export class ReplayList {
  /** @param {HTMLElement} section holds a list element with class replay-list */
  constructor(section, channel) {
    this.section = section;
    this.list = section.querySelector(".replay-list");
    this.channel = channel;
    this.timer = 0;
  }

  start() {
    this.refresh();
  }

  /** refresh reads the recordings again (also when a broadcast ends). */
  async refresh() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), REFRESH_MS);
    let answer;
    try {
      answer = await fetchJSON(`${channelURL(this.channel)}/recordings`);
    } catch {
      return; // the next refresh tries again
    }
    const recs = (answer && answer.recordings) || [];
    this.list.replaceChildren(...recs.map((r) => this.item(r)));
    this.section.hidden = recs.length === 0;
  }

  item(r) {
    const start = new Date(r.start);
    const when = Number.isNaN(start.getTime()) ? r.id : start.toLocaleString();
    const label = r.state === "recording" ? `${when} · recording now` : `${when} · ${formatDuration(r.duration)}`;
    const thumb = r.thumbnail ? el("img", { src: r.thumbnail, alt: "", width: 96, height: 54, loading: "lazy" }) : null;
    return el("li", {}, el("a", { href: r.watch, dataset: { id: r.id } }, thumb, label));
  }
}
