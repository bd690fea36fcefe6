/* Support assistant widget loader, served as /widget.js. Embed with
 *   <script src="https://HOST/widget.js" data-assistant-url="https://HOST" async></script>
 * It adds a launcher button and an iframe (the conversation UI, served by the assistant
 * server) inside a closed shadow root, so host-page CSS cannot reach them and host scripts
 * cannot reach into the frame: the conversation token lives only in the frame's origin.
 * Loader and frame talk only through postMessage with explicit origins (see README.md). */
(() => {
  "use strict";
  const w = window;
  const d = document;
  const NS = "support-assistant";
  const TAG = "[Support assistant]";

  // A second copy (the snippet pasted twice, a SPA re-inserting it) must not add a
  // second launcher or a second conversation.
  if (w.SupportAssistant) {
    console.warn(`${TAG} widget.js is included more than once; only the first copy runs.`);
    return;
  }
  const script = d.currentScript || d.querySelector('script[src*="widget.js"][data-assistant-url]');
  const attr = (name) => (script && script.getAttribute(`data-${name}`)) || "";

  let base;
  try {
    base = new URL(attr("assistant-url"), location.href);
    if (!/^https?:$/.test(base.protocol)) throw new Error(base.protocol);
  } catch {
    console.error(`${TAG} set data-assistant-url to the assistant server, like https://support.example.com`);
    return;
  }
  const ORIGIN = base.origin; // the only origin messages are sent to and accepted from
  const BASE = ORIGIN + base.pathname.replace(/\/+$/, "");

  // What identify() accepts: the same limits the server enforces, checked here so a
  // developer gets a TypeError at the call site instead of a silent anonymous chat.
  const RULES = {
    id: [/^[^]{1,255}$/, "a string of 1 to 255 characters"],
    email: [/^[^\s@]{1,64}@[^\s@]{1,255}$/, "an email address like name@example.com"],
    name: [/^[^]{1,255}$/, "a string of 1 to 255 characters"],
    plan: [/^[\w-]{1,100}$/, "1 to 100 letters, digits, '_' or '-'"],
    userHash: [/^[0-9a-fA-F]{64}$/, "64 hex characters: HMAC-SHA256 of the id with the widget secret"],
  };
  const checkUser = (user) => {
    if (!user || typeof user !== "object" || Array.isArray(user)) {
      throw new TypeError("SupportAssistant.identify() expects an object like {id, email, name, plan, userHash}");
    }
    const out = {};
    for (const key of Object.keys(user)) {
      const rule = RULES[key];
      if (!rule) {
        throw new TypeError(`SupportAssistant.identify(): unknown field "${key}"; use ${Object.keys(RULES).join(", ")}`);
      }
      const value = user[key];
      if (value === undefined || value === null) continue;
      if (typeof value !== "string" || !rule[0].test(value)) {
        throw new TypeError(`SupportAssistant.identify(): ${key} must be ${rule[1]}`);
      }
      out[key] = value;
    }
    if (out.userHash && !out.id) throw new TypeError("SupportAssistant.identify(): userHash needs the id it signs");
    return out;
  };

  let user = null;
  const given = {};
  for (const [key, name] of [["id", "customer-id"], ["email", "customer-email"], ["name", "customer-name"],
    ["plan", "customer-plan"], ["userHash", "user-hash"]]) {
    if (attr(name)) given[key] = attr(name);
  }
  try {
    if (Object.keys(given).length) user = checkUser(given);
  } catch (err) {
    // A bad attribute must not break the host page; the chat still works anonymously.
    console.warn(`${TAG} ignoring the data-customer-* attributes: ${err.message}`);
  }

  const locale = ((attr("locale") || d.documentElement.lang || navigator.language || "en")
    .toLowerCase().match(/^[a-z]{2}/) || ["en"])[0];
  const src = `${BASE}/widget/frame?host=${encodeURIComponent(location.origin)}`
    + `&locale=${locale}&title=${encodeURIComponent(attr("title").slice(0, 100))}`;

  // Launcher and panel styles; inside the shadow root nothing of the host page applies.
  const CSS = `
.launcher{all:initial;box-sizing:border-box;position:fixed;right:20px;bottom:20px;width:56px;height:56px;
border-radius:50%;background:#2448c8;color:#fff;cursor:pointer;display:flex;align-items:center;
justify-content:center;box-shadow:0 4px 14px rgba(0,0,0,.28);font:700 12px/1 system-ui,sans-serif}
.launcher:hover{background:#1b3aa8}
.launcher:focus-visible{outline:3px solid #2448c8;outline-offset:3px}
svg{all:initial;width:28px;height:28px;fill:#fff;pointer-events:none}
.badge{all:initial;position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;padding:0 6px;
box-sizing:border-box;border-radius:10px;background:#c6282b;color:#fff;font:700 12px/20px system-ui,sans-serif;text-align:center}
[hidden]{display:none}
.panel{all:initial;display:none;position:fixed;right:20px;bottom:88px;width:380px;
height:min(640px,calc(100vh - 108px));border:0;border-radius:12px;background:#fff;
box-shadow:0 8px 32px rgba(0,0,0,.28)}
.panel.open{display:block}
@media (max-width:480px){.panel{right:0;bottom:0;width:100vw;height:100%;border-radius:0}}
@media (prefers-reduced-motion:no-preference){.launcher{transition:background .15s}}`;
  const CHAT = "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z";
  const CROSS = "M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12l5.6 5.6-1.4 1.4-5.6-5.6L6.4 19 5 17.6l5.6-5.6L5 6.4z";

  let text = { openChat: "Open chat", closeChat: "Close chat", frameTitle: "Support chat", unread: "{count} new" };
  let host, frame, launcher, path, badge;
  let open = false;
  let wanted = false; // open() before the DOM was ready
  let ready = false;
  let unread = 0;

  const post = (type, extra) => {
    if (ready && frame.contentWindow) frame.contentWindow.postMessage({ ns: NS, type, ...extra }, ORIGIN);
  };

  const label = () => {
    let name = open ? text.closeChat : text.openChat;
    if (!open && unread) name += `, ${text.unread.replace("{count}", String(unread))}`;
    launcher.setAttribute("aria-label", name);
    launcher.setAttribute("aria-expanded", String(open));
    path.setAttribute("d", open ? CROSS : CHAT);
    badge.textContent = String(unread);
    badge.hidden = open || !unread;
  };

  const setOpen = (value) => {
    if (!frame) {
      wanted = value;
      return;
    }
    const hadFocus = d.activeElement === host; // focus is inside our shadow root or frame
    open = value;
    frame.classList.toggle("open", open);
    label();
    post(open ? "open" : "close");
    if (open) frame.focus();
    else if (hadFocus) launcher.focus();
  };

  const mount = () => {
    host = d.createElement("support-assistant");
    // Inline !important beats any host stylesheet rule, even "* {... !important}".
    host.style.cssText = "all:initial!important;display:block!important;position:fixed!important;"
      + "right:0!important;bottom:0!important;width:0!important;height:0!important;"
      + "z-index:2147483000!important;visibility:visible!important;opacity:1!important";
    const root = host.attachShadow({ mode: "closed" });
    // A constructed stylesheet is not an inline style, so host pages whose CSP forbids
    // 'unsafe-inline' styles still show the launcher.
    if (root.adoptedStyleSheets && w.CSSStyleSheet && CSSStyleSheet.prototype.replaceSync) {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      root.adoptedStyleSheets = [sheet];
    } else {
      const style = d.createElement("style");
      style.textContent = CSS;
      root.append(style);
    }
    launcher = d.createElement("button");
    launcher.type = "button";
    launcher.className = "launcher";
    const svg = d.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    path = d.createElementNS("http://www.w3.org/2000/svg", "path");
    svg.append(path);
    badge = d.createElement("span");
    badge.className = "badge";
    badge.setAttribute("aria-hidden", "true");
    launcher.append(svg, badge);
    launcher.addEventListener("click", () => setOpen(!open));
    launcher.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && open) setOpen(false);
    });
    frame = d.createElement("iframe");
    frame.className = "panel";
    frame.title = text.frameTitle;
    frame.src = src;
    frame.setAttribute("referrerpolicy", "origin");
    root.append(launcher, frame);
    label();
    (d.body || d.documentElement).append(host);
    if (wanted) setOpen(true);
  };

  w.addEventListener("message", (e) => {
    // Only our own frame, from the assistant's origin, is listened to.
    if (!frame || e.source !== frame.contentWindow || e.origin !== ORIGIN) return;
    const msg = e.data;
    if (!msg || msg.ns !== NS) return;
    if (msg.type === "ready") {
      ready = true;
      const strings = msg.strings || {};
      for (const key of Object.keys(text)) {
        if (typeof strings[key] === "string" && strings[key].length <= 100) text[key] = strings[key];
      }
      frame.title = text.frameTitle;
      label();
      post("init", { user, open });
    } else if (msg.type === "close") {
      setOpen(false);
    } else if (msg.type === "unread" && Number.isInteger(msg.count) && msg.count >= 0) {
      unread = msg.count;
      label();
    }
  });

  const api = Object.freeze({
    /** Open the chat panel. */
    open: () => setOpen(true),
    /** Close the chat panel. */
    close: () => setOpen(false),
    /** Tell the widget who the signed-in customer is (userHash from your server). */
    identify: (customer) => {
      user = checkUser(customer);
      post("identify", { user });
    },
    /** Forget the customer and the conversation (call it when they sign out). */
    reset: () => {
      user = null;
      post("reset");
    },
  });
  Object.defineProperty(w, "SupportAssistant", { value: api, enumerable: true });
  w.dispatchEvent(new Event("supportassistant:ready"));

  if (d.body) mount();
  else d.addEventListener("DOMContentLoaded", mount, { once: true });
})();
