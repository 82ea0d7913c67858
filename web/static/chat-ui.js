// The chat panel of the watch page: history, messages, system notices, the
// name and message forms, and moderator controls. All user text is inserted
// with textContent (via el()), never as HTML.
import { el, plural } from "./common.js";
import { ChatConnection } from "./chat.js";

const NAME_KEY = "onair.name";
const MAX_MESSAGES = 300;

const ERROR_TEXT = {
  name_required: "Pick a display name first.",
  bad_name: "That name is not allowed: use 1–24 letters, digits, spaces, _ - or .",
  reserved_name: "That name is reserved; pick another.",
  bad_token: "The moderator link is invalid, expired or revoked; moderator tools are off.",
  banned: "You are banned from this chat.",
  forbidden: "Only moderators can do that.",
};

function storageGet(store, key) {
  try {
    return store.getItem(key) || "";
  } catch {
    return "";
  }
}

function storageSet(store, key, value) {
  try {
    if (value) store.setItem(key, value);
    else store.removeItem(key);
  } catch {
    /* storage disabled: nothing is remembered */
  }
}

/**
 * modTokenKey is where a moderator token for channel is kept: sessionStorage,
 * so it lasts for the tab and never goes into a URL the page requests.
 */
export function modTokenKey(channel) {
  return `onair.mod.${channel}`;
}

/** takeModToken moves a "#mod=TOKEN" fragment into sessionStorage and removes it from the address bar. */
export function takeModToken(channel) {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("mod");
  if (token) {
    storageSet(sessionStorage, modTokenKey(channel), token);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return storageGet(sessionStorage, modTokenKey(channel));
}

function shortTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export class ChatView {
  /**
   * @param {string} channel
   * @param {{onSystem?: (ev: object) => void, hook?: object}} opts onSystem gets live/offline/taken_down notices.
   */
  constructor(channel, { onSystem = () => {}, hook = {} } = {}) {
    this.channel = channel;
    this.onSystem = onSystem;
    this.hook = hook;
    this.token = takeModToken(channel);
    this.name = storageGet(localStorage, NAME_KEY);
    this.me = null; // {id, name, mod}
    this.mod = false;
    this.pending = new Map(); // ref -> text, to restore a refused message

    this.list = document.getElementById("messages");
    this.viewers = document.getElementById("viewers");
    this.conn = document.getElementById("chat-conn");
    this.error = document.getElementById("chat-error");
    this.nameForm = document.getElementById("name-form");
    this.nameInput = document.getElementById("name-input");
    this.sendForm = document.getElementById("send-form");
    this.input = document.getElementById("chat-input");
    this.meLabel = document.getElementById("me");
    this.modNote = document.getElementById("mod-note");

    this.nameInput.value = this.name;
    this.nameForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const name = this.nameInput.value.trim();
      if (!name) return;
      this.name = name;
      this.joinNow();
    });
    this.sendForm.addEventListener("submit", (e) => {
      e.preventDefault();
      this.sendNow();
    });
    document.getElementById("change-name").addEventListener("click", () => {
      this.showNameForm(true);
    });
    this.list.addEventListener("click", (e) => this.onModClick(e));

    this.ws = new ChatConnection(channel, {
      onEvent: (ev) => this.handle(ev),
      onState: (state, detail) => this.connState(state, detail),
    });
    this.ws.connect();
  }

  connState(state, detail) {
    this.hook.chatState = state;
    const text = {
      connecting: "connecting…",
      open: "",
      retrying: `reconnecting in ${detail} s…`,
      closed: "disconnected",
    }[state];
    this.conn.textContent = text ?? "";
    if (state === "closed") {
      this.setError(detail || "Disconnected.");
      this.sendForm.hidden = true;
      this.nameForm.hidden = true;
    }
  }

  setError(text) {
    this.error.textContent = text;
    clearTimeout(this.errorTimer);
    if (text) this.errorTimer = setTimeout(() => (this.error.textContent = ""), 8000);
  }

  showNameForm(show) {
    this.nameForm.hidden = !show;
    this.sendForm.hidden = show || !this.me?.name;
    if (show) this.nameInput.focus();
  }

  joinNow() {
    if (!this.ws.join(this.name, this.token)) this.setError("Not connected yet; try again in a moment.");
  }

  sendNow() {
    const text = this.input.value.trim();
    if (!text) return;
    const ref = this.ws.send(text);
    if (!ref) {
      this.setError("Not connected; your message was not sent.");
      return;
    }
    this.pending.set(ref, text);
    this.input.value = "";
    this.input.focus();
  }

  handle(ev) {
    switch (ev.type) {
      case "welcome":
        this.me = ev.you || null;
        this.setViewers(ev.viewers);
        for (const m of ev.history || []) this.add(m, true);
        this.scrollToEnd(true);
        if (this.name) this.joinNow(); // remembered name (and moderator token) rejoin on every connect
        else this.showNameForm(true);
        break;
      case "joined":
        this.me = ev.you;
        this.name = ev.you.name;
        storageSet(localStorage, NAME_KEY, this.name);
        this.meLabel.textContent = `as ${this.name}`;
        this.setMod(!!ev.you.mod);
        this.showNameForm(false);
        this.setError("");
        break;
      case "msg":
      case "system":
        if (ev.ref) this.pending.delete(ev.ref);
        this.add(ev, false);
        break;
      case "viewers":
        this.setViewers(ev.count);
        break;
      case "deleted":
        this.list.querySelector(`li[data-id="${CSS.escape(String(ev.id))}"]`)?.remove();
        break;
      case "timeout":
        this.markUser(ev.user, "timed-out", true);
        break;
      case "ban":
        this.markUser(ev.user, "banned", true);
        break;
      case "unban":
        this.markUser(ev.user, "timed-out", false);
        this.markUser(ev.user, "banned", false);
        break;
      case "error":
        this.onError(ev);
        break;
      default:
        break; // pong and future types
    }
  }

  onError(ev) {
    const text = ERROR_TEXT[ev.code] || ev.message || ev.code || "Something went wrong.";
    this.setError(text);
    if (ev.ref && this.pending.has(ev.ref)) {
      if (!this.input.value) this.input.value = this.pending.get(ev.ref);
      this.pending.delete(ev.ref);
    }
    if (ev.code === "bad_token") {
      this.token = "";
      storageSet(sessionStorage, modTokenKey(this.channel), "");
      this.setMod(false);
      if (this.name) this.joinNow(); // join as a plain viewer instead
    }
    if (ev.code === "bad_name" || ev.code === "reserved_name" || ev.code === "name_required") {
      this.showNameForm(true);
    }
  }

  setViewers(n) {
    if (n == null) return;
    this.viewers.textContent = `${plural(n, "viewer")} in chat`;
    this.hook.chatViewers = Number(n) || 0;
  }

  setMod(on) {
    if (on === this.mod) return;
    this.mod = on;
    document.body.classList.toggle("is-mod", on);
    this.modNote.hidden = !on;
    for (const li of this.list.querySelectorAll("li.msg")) {
      li.querySelector(".mod-actions")?.remove();
      if (on) li.append(this.modActions(li.dataset.user, li.dataset.name));
    }
  }

  modActions(userID, name) {
    const box = el("span", { className: "mod-actions" },
      el("button", { type: "button", className: "mod-btn", dataset: { action: "delete" }, textContent: "Delete", "aria-label": `Delete message from ${name}` }));
    if (userID && userID !== this.me?.id) {
      box.append(
        el("button", { type: "button", className: "mod-btn", dataset: { action: "timeout" }, textContent: "Time out", "aria-label": `Time out ${name} for 10 minutes` }),
        el("button", { type: "button", className: "mod-btn danger", dataset: { action: "ban" }, textContent: "Ban", "aria-label": `Ban ${name}` }),
      );
    }
    return box;
  }

  onModClick(e) {
    const btn = e.target.closest("button.mod-btn");
    if (!btn || !this.mod) return;
    const li = btn.closest("li.msg");
    const action = btn.dataset.action;
    if (action === "delete") this.ws.sendObject({ type: "delete", id: li.dataset.id });
    else if (action === "timeout") this.ws.sendObject({ type: "timeout", user: li.dataset.user, seconds: 600 });
    else if (action === "ban") {
      if (!window.confirm(`Ban ${li.dataset.name} from this chat?`)) return;
      this.ws.sendObject({ type: "ban", user: li.dataset.user });
    }
  }

  markUser(userID, cls, on) {
    if (!userID) return;
    for (const li of this.list.querySelectorAll(`li[data-user="${CSS.escape(String(userID))}"]`)) {
      li.classList.toggle(cls, on);
    }
  }

  nearBottom() {
    const l = this.list;
    return l.scrollHeight - l.scrollTop - l.clientHeight < 60;
  }

  scrollToEnd(force) {
    if (force || this.nearBottom()) this.list.scrollTop = this.list.scrollHeight;
  }

  add(ev, fromHistory) {
    const id = String(ev.id || "");
    if (id && this.list.querySelector(`li[data-id="${CSS.escape(id)}"]`)) return; // seen (reconnect history)
    const stick = this.nearBottom();
    const li = ev.type === "system" ? this.systemItem(ev) : this.messageItem(ev);
    this.list.append(li);
    while (this.list.children.length > MAX_MESSAGES) this.list.firstElementChild.remove();
    if (stick) this.scrollToEnd(true);
    if (ev.type === "system" && !fromHistory) this.onSystem(ev);
  }

  messageItem(ev) {
    const user = ev.user || {};
    const name = String(user.name || "");
    const mine = this.me && user.id === this.me.id;
    const li = el("li", {
      className: `msg${mine ? " mine" : ""}${user.mod ? " from-mod" : ""}`,
      dataset: { id: String(ev.id || ""), user: String(user.id || ""), name },
    },
    el("time", { dateTime: ev.time || "", className: "when", textContent: shortTime(ev.time) }),
    el("span", { className: "who", textContent: name }),
    user.mod ? el("span", { className: "tag", textContent: "mod" }) : null,
    el("span", { className: "text", textContent: String(ev.text ?? "") }));
    if (this.mod) li.append(this.modActions(li.dataset.user, name));
    return li;
  }

  systemItem(ev) {
    const text = [String(ev.text || ""), ev.reason ? `(${ev.reason})` : ""].filter(Boolean).join(" ");
    return el("li", {
      className: `system kind-${String(ev.kind || "notice").replace(/[^a-z_]/g, "")}`,
      dataset: { id: String(ev.id || "") },
    },
    el("time", { dateTime: ev.time || "", className: "when", textContent: shortTime(ev.time) }),
    el("span", { className: "text", textContent: text }));
  }
}
