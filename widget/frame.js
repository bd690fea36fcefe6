/* Support assistant: the conversation UI inside the widget's iframe.
 * Runs on the assistant's origin under a strict CSP: no inline code, and every piece of
 * text (the bot's, an agent's, the customer's) becomes DOM through createElement and
 * textContent, never HTML. The conversation token stays in this origin's localStorage. */
(() => {
  "use strict";
  const NS = "support-assistant";
  const TAG = "[Support assistant]";
  const body = document.body;
  const HOST = body.dataset.hostOrigin || "";
  const LOCALE = body.dataset.locale || "en";
  const API = body.dataset.apiBase || "";
  const SCRIPT = document.currentScript ? document.currentScript.src : location.href;
  const KEY = `support-assistant:${HOST}`;
  const PAGE = 200; // the server's page size for message history
  const $ = (id) => document.getElementById(id);
  const logEl = $("log");
  const input = $("message");
  const statusEl = $("status");
  const typingEl = $("typing");
  const alertEl = $("alert");
  const csatEl = $("csat");
  const emailForm = $("email-form");
  const humanBtn = $("human");
  const scores = [...csatEl.querySelectorAll(".score")];

  let strings = {};
  let conv = null; // {id, token, customer, rated, feedback}: the stored conversation
  let creating = null; // the in-flight POST /v1/conversations
  let identity = null; // from the loader: {id, email, name, plan, userHash}
  let stream = null; // AbortController of the live event stream
  let status = "bot";
  let waitMinutes = null;
  let isOpen = false;
  let unread = 0;
  let live = false; // history is shown: new messages from now on count as unread
  let lastId = 0; // highest message id shown
  let picked = 0; // CSAT score
  let retryAction = null;
  let shown = new Map(); // message id -> its element: the POST and the stream both deliver
  let outbox = []; // customer messages not yet confirmed stored

  // -- strings -------------------------------------------------------------------------
  const t = (key, vars = {}) => (strings[key] || key).replace(/\{(\w+)\}/g, (m, k) => (k in vars ? vars[k] : m));

  const loadStrings = async () => {
    const get = (loc) => fetch(new URL(`i18n/${loc}.json`, SCRIPT))
      .then((r) => (r.ok ? r.json() : {}))
      .catch(() => ({}));
    const [en, local] = await Promise.all([get("en"), LOCALE === "en" ? {} : get(LOCALE)]);
    strings = { ...en, ...local }; // missing German keys fall back to English
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const node of document.querySelectorAll("[data-i18n-label]")) {
      node.setAttribute("aria-label", t(node.dataset.i18nLabel));
    }
    input.placeholder = t("placeholder");
    if (!body.dataset.title) $("title").textContent = t("title");
    document.title = $("title").textContent;
  };

  // -- DOM helpers ---------------------------------------------------------------------
  const h = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const scroll = () => {
    logEl.scrollTop = logEl.scrollHeight;
  };

  /** A link only for URLs that parse and are http(s) or mailto: never javascript: or data:. */
  const link = (href, label) => {
    let url;
    try {
      url = new URL(href);
    } catch {
      return null;
    }
    if (!["https:", "http:", "mailto:"].includes(url.protocol)) return null;
    const a = h("a", null, label);
    a.href = url.href;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return a;
  };

  // **bold**, [text](url) and bare http(s) URLs. Citation markers like [1] stay text.
  const INLINE = /\*\*(.+?)\*\*|\[([^\]\n]+)\]\(([^()\s]+)\)|\b(https?:\/\/[^\s<>"]+)/g;
  const inline = (parent, text) => {
    let last = 0;
    for (const m of text.matchAll(INLINE)) {
      parent.append(text.slice(last, m.index));
      last = m.index + m[0].length;
      if (m[1] !== undefined) {
        const strong = h("strong");
        inline(strong, m[1]);
        parent.append(strong);
      } else if (m[2] !== undefined) {
        parent.append(link(m[3], m[2]) || m[0]);
      } else {
        const url = m[4].replace(/[.,;:!?)\]'"]+$/, ""); // sentence punctuation is not the URL's
        last -= m[4].length - url.length;
        parent.append(link(url, url) || url);
      }
    }
    parent.append(text.slice(last));
  };

  /** Paragraphs, "-" and "1." lists, "#" headings as bold lines; built node by node. */
  const format = (text) => {
    const frag = document.createDocumentFragment();
    let list = null;
    let para = null;
    for (const line of String(text).split(/\r?\n/)) {
      const item = /^\s*(?:([-*•])|(\d{1,3})[.)])\s+(.*)$/.exec(line);
      const heading = /^#{1,6}\s+(.*)$/.exec(line);
      if (!line.trim()) {
        list = para = null;
      } else if (item) {
        const tag = item[1] ? "UL" : "OL";
        if (!list || list.tagName !== tag) {
          list = frag.appendChild(h(tag));
          if (item[2] && item[2] !== "1") list.start = Number(item[2]);
        }
        inline(list.appendChild(h("li")), item[3]);
        para = null;
      } else if (heading) {
        inline(frag.appendChild(h("p")).appendChild(h("strong")), heading[1]);
        list = para = null;
      } else {
        list = null;
        if (para) para.append(h("br"));
        else para = frag.appendChild(h("p"));
        inline(para, line);
      }
    }
    return frag;
  };

  const WHO = { customer: "you", assistant: "assistant", agent: "agent" };

  /** One message's element: who wrote it, the text, and the sources under an answer. */
  const bubble = (m) => {
    const role = WHO[m.role] ? m.role : "system";
    const node = h("div", `msg msg-${role}`);
    if (role === "agent") node.append(h("p", "author", m.author || t("agent")));
    else if (role !== "system") node.append(h("span", "sr-only", `${t(WHO[role])}: `));
    const text = h("div", "text");
    if (role === "customer" || role === "system") text.textContent = m.text; // shown as typed
    else text.append(format(m.text));
    node.append(text);
    const cites = Array.isArray(m.citations) ? m.citations : [];
    if (cites.length) {
      const box = h("div", "sources");
      box.append(h("p", "sources-title", t("sources")));
      const ol = box.appendChild(h("ol"));
      for (const c of cites) {
        const li = ol.appendChild(h("li"));
        if (Number.isInteger(c.n)) li.value = c.n; // matches the [n] markers in the text
        li.append(link(c.url, c.title || c.url) || c.title || "");
      }
      node.append(box);
    }
    return node;
  };

  /** Insert in id order; unconfirmed (pending) elements stay last. */
  const place = (node, id) => {
    const next = [...logEl.children].find((c) => (c.dataset.id ? Number(c.dataset.id) > id : c.classList.contains("pending")));
    logEl.insertBefore(node, next || null);
  };

  /** Ids of the answers the customer rated (kept with the conversation, see save). */
  const answered = (c) => (c && Array.isArray(c.feedback) ? c.feedback : []);

  /** "That helped" / "Didn't help" under a bot answer; once sent, a thank-you instead. */
  const askFeedback = (id) => {
    const group = h("div", "feedback");
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", t("helpful"));
    let busy = false;
    const send = guarded(async (helpful) => {
      if (busy) return;
      busy = true;
      const c = conv;
      try {
        await call("POST", at(c, "/feedback"), { message_id: id, helpful }, auth(c));
      } catch (err) {
        if (err.status !== 409) throw err; // 409: rated already (another tab): recorded
      } finally {
        busy = false;
      }
      if (c !== conv) return;
      const s = stored(); // another tab may have rated other answers meanwhile
      c.feedback = [...new Set([...(s && s.id === c.id ? answered(s) : []), ...answered(c), id])];
      save();
      const thanks = h("p", "feedback-thanks", t("feedbackThanks"));
      thanks.tabIndex = -1;
      const focused = group.contains(document.activeElement);
      group.replaceWith(thanks);
      if (focused) thanks.focus(); // keyboard users keep their place
    });
    for (const [helpful, label] of [[true, t("helped")], [false, t("notHelped")]]) {
      const btn = group.appendChild(h("button", null, label));
      btn.type = "button";
      btn.addEventListener("click", () => send(helpful));
    }
    return group;
  };

  /** Show a message once, whichever of the POST, the stream or the history brings it first. */
  const addMessage = (m, replacing) => {
    if (!m || !Number.isInteger(m.id)) return;
    lastId = Math.max(lastId, m.id);
    if (shown.has(m.id)) {
      if (replacing) replacing.remove();
      return;
    }
    if (m.role === "customer") {
      // Our own message echoed by the stream before the POST said "stored".
      const mine = outbox.find((o) => o.text.trim() === m.text);
      if (mine) {
        confirm(mine, m);
        return;
      }
    }
    const node = bubble(m);
    node.dataset.id = m.id;
    if (m.rateable && !answered(conv).includes(m.id)) node.append(askFeedback(m.id));
    shown.set(m.id, node);
    if (replacing) replacing.replaceWith(node);
    else place(node, m.id);
    if (live && !isOpen && (m.role === "assistant" || m.role === "agent")) {
      unread += 1;
      tell("unread", { count: unread });
    }
    scroll();
  };

  const notice = (text) => {
    logEl.append(h("p", "notice", text));
    scroll();
  };

  // -- alerts --------------------------------------------------------------------------
  const explain = (err) => {
    if (err.status === 429) return t("rateLimited");
    if (err.status === 422) return t("invalid", { reason: err.message });
    if (err.status >= 500) return t("serverError");
    return t("networkError");
  };
  const showAlert = (text, retry) => {
    $("alert-text").textContent = text;
    retryAction = retry || null;
    $("alert-retry").hidden = !retry;
    alertEl.hidden = false;
  };
  const hideAlert = () => {
    alertEl.hidden = true;
  };
  /** An action whose failure is shown with a Retry button that runs it again. */
  const guarded = (fn) => async function again(...args) {
    hideAlert();
    try {
      await fn(...args);
    } catch (err) {
      if (err.name === "AbortError") return;
      if (err.status === 404 || err.status === 401) expire();
      else showAlert(explain(err), () => again(...args));
    }
  };

  // -- HTTP ----------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }
  const auth = (c) => ({ Authorization: `Bearer ${c.token}` });
  const at = (c, rest) => `${API}/v1/conversations/${encodeURIComponent(c.id)}${rest}`;

  /** fetch that throws ApiError with the server's message on a non-2xx answer. */
  const call = async (method, url, data, headers = {}, signal) => {
    const init = { method, headers: { ...headers }, cache: "no-store", credentials: "omit", signal };
    if (data !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(data);
    }
    const res = await fetch(url, init);
    if (!res.ok) {
      let error = {};
      try {
        error = (await res.json()).error || {};
      } catch {
        // not our JSON (a proxy's page): the status says enough
      }
      throw new ApiError(res.status, error.message || `HTTP ${res.status}`);
    }
    return res;
  };

  /** Read a text/event-stream body, calling onEvent({event, id, data}) per event. */
  const readSSE = async (res, onEvent) => {
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let ev = { data: [] };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value;
        const lines = buffer.split("\n");
        buffer = lines.pop();
        for (let line of lines) {
          line = line.replace(/\r$/, "");
          if (!line) {
            if (ev.data.length) onEvent({ event: ev.event || "message", id: ev.id, data: JSON.parse(ev.data.join("\n")) });
            ev = { data: [] };
            continue;
          }
          const colon = line.indexOf(":");
          if (colon === 0) continue; // a comment (keep-alive)
          const field = colon < 0 ? line : line.slice(0, colon);
          const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "data") ev.data.push(val);
          else if (field === "event" || field === "id") ev[field] = val;
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  };

  // -- the conversation ----------------------------------------------------------------
  const save = () => {
    try {
      if (conv) localStorage.setItem(KEY, JSON.stringify(conv));
      else localStorage.removeItem(KEY);
    } catch {
      // storage blocked: the conversation lasts as long as this page
    }
  };
  const stored = () => {
    try {
      const value = JSON.parse(localStorage.getItem(KEY));
      return value && typeof value.id === "string" && typeof value.token === "string" ? value : null;
    } catch {
      return null;
    }
  };

  const create = async () => {
    const body = {};
    if (identity) {
      const { userHash, ...customer } = identity;
      if (Object.keys(customer).length) body.customer = customer;
      if (userHash) body.user_hash = userHash;
    }
    let res;
    try {
      res = await call("POST", `${API}/v1/conversations`, body);
    } catch (err) {
      if (!body.customer || ![401, 403, 422].includes(err.status)) throw err;
      console.warn(`${TAG} the customer identity was refused (${err.message}). Continuing as an anonymous `
        + "visitor. data-user-hash must be the hex HMAC-SHA256 of data-customer-id with the widget secret, "
        + "computed on your server.");
      res = await call("POST", `${API}/v1/conversations`, {});
      body.customer = null;
    }
    const started = await res.json();
    conv = { id: started.id, token: started.token, customer: (body.customer && body.customer.id) || null };
    save();
    listen();
    return conv;
  };
  const ensure = () => (conv ? Promise.resolve(conv)
    : creating || (creating = create().finally(() => { creating = null; })));

  /** Fetch messages newer than the newest shown (history after a reload, or a gap). */
  const catchUp = async () => {
    const c = conv;
    for (;;) {
      const res = await call("GET", at(c, `/messages?after=${lastId}`), undefined, auth(c));
      const { messages } = await res.json();
      if (c !== conv) return;
      messages.forEach((m) => addMessage(m));
      if (messages.length < PAGE) return;
    }
  };

  /** The live stream: fetch (the token must not go in a URL), resumed by Last-Event-ID. */
  const listen = async () => {
    if (stream) stream.abort();
    const c = conv;
    const ctrl = new AbortController();
    stream = ctrl;
    let after = "";
    let delay = 1000;
    while (!ctrl.signal.aborted) {
      try {
        const headers = { ...auth(c), Accept: "text/event-stream" };
        if (after) headers["Last-Event-ID"] = after;
        const res = await call("GET", at(c, "/events"), undefined, headers, ctrl.signal);
        delay = 1000;
        await readSSE(res, (ev) => {
          if (ev.id) after = ev.id;
          if (ev.event === "message") addMessage(ev.data.message);
          else if (ev.event === "status") setStatus(ev.data);
        });
      } catch (err) {
        if (ctrl.signal.aborted) return;
        if (err.status === 401 || err.status === 404) {
          expire();
          return;
        }
      }
      // Back off (with jitter, so a restarted server is not hit by every widget at once).
      await new Promise((resolve) => { setTimeout(resolve, delay * (1 + Math.random() / 2)); });
      delay = Math.min(delay * 2, 30000);
    }
  };

  const setStatus = (s) => {
    status = s.status;
    const text = {
      waiting: waitMinutes ? t("waitingMinutes", { minutes: waitMinutes }) : t("waiting"),
      agent: t("agentJoined", { name: s.agent_name || t("someone") }),
      bot: t("botBack"),
      resolved: t("resolved"),
    }[status] || "";
    statusEl.textContent = text;
    statusEl.hidden = !text;
    const human = status === "waiting" || status === "agent";
    humanBtn.hidden = human;
    if (human) typingEl.hidden = true; // the bot stays quiet while a person owns it
    else emailForm.hidden = true;
    csatEl.hidden = status !== "resolved" || Boolean(conv && conv.rated);
  };

  const onHandoff = (handoff) => {
    waitMinutes = handoff.expected_wait_minutes || null;
    if (status !== "agent") setStatus({ status: "waiting" });
    emailForm.hidden = !handoff.can_leave_email;
  };

  /** Clear everything shown, for a new conversation (or a new customer). */
  const clear = () => {
    if (stream) stream.abort();
    stream = null;
    conv = null;
    shown = new Map();
    outbox = [];
    lastId = 0;
    waitMinutes = null;
    [...logEl.children].forEach((c) => { if (c.id !== "welcome") c.remove(); });
    picked = 0;
    scores.forEach((b) => b.setAttribute("aria-pressed", "false"));
    $("csat-send").disabled = true;
    $("csat-comment").value = "";
    setStatus({ status: "bot" });
    statusEl.hidden = true;
    hideAlert();
  };

  /** The stored conversation is gone (token refused): forget it and say so. */
  const expire = () => {
    clear();
    save();
    notice(t("expired"));
  };

  const restore = guarded(async () => {
    conv = stored();
    if (!conv) return;
    listen(); // replays the status history too, so the header and CSAT are right
    await catchUp();
    // The open hand-off (expected wait, or the email form) and whether it was rated.
    const c = conv;
    const state = await (await call("GET", at(c, ""), undefined, auth(c))).json();
    if (c !== conv) return;
    if (state.rated) conv.rated = true;
    csatEl.hidden = status !== "resolved" || Boolean(conv.rated);
    if (state.handoff && state.handoff.status === "queued") onHandoff(state.handoff);
  });

  // -- sending -------------------------------------------------------------------------
  const uuid = () => (crypto.randomUUID ? crypto.randomUUID()
    : [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join(""));

  const setState = (out, text, retry) => {
    out.state.textContent = text;
    if (retry) {
      const btn = out.state.appendChild(h("button", "retry", t("retry")));
      btn.type = "button";
      btn.addEventListener("click", () => deliver(out));
    }
  };

  const confirm = (out, m) => {
    if (!m || out.node.dataset.id) return;
    outbox = outbox.filter((o) => o !== out);
    out.node.dataset.id = m.id;
    out.node.classList.remove("pending", "failed");
    out.state.remove();
    shown.set(m.id, out.node);
    lastId = Math.max(lastId, m.id);
  };

  const submit = (text) => {
    const out = { key: uuid(), text, node: bubble({ role: "customer", text }), state: h("p", "state") };
    out.node.classList.add("pending");
    out.node.append(out.state);
    outbox.push(out);
    logEl.append(out.node);
    scroll();
    deliver(out);
  };

  /** Post one message and stream the answer; on failure it stays, marked "Not sent". */
  const deliver = async (out) => {
    hideAlert();
    out.node.classList.remove("failed");
    setState(out, t("sending"));
    let pending = null; // the bot's answer while it streams in
    let finished = false;
    let c = null;
    try {
      c = await ensure();
      const res = await call("POST", at(c, "/messages"), { text: out.text },
        { ...auth(c), "Idempotency-Key": out.key, Accept: "text/event-stream" });
      const onEvent = (ev) => {
        if (conv !== c) return; // "New conversation" was pressed meanwhile
        if (ev.event === "stored") {
          confirm(out, ev.data.message);
          typingEl.hidden = status === "waiting" || status === "agent";
        } else if (ev.event === "delta") {
          typingEl.hidden = true;
          if (!pending) {
            pending = bubble({ role: "assistant", text: "" });
            pending.classList.add("pending");
            logEl.append(pending);
          }
          pending.querySelector(".text").append(ev.data.text);
          scroll();
        } else if (ev.event === "reset") {
          // The streamed text was replaced (the model failed a check): drop it.
          if (pending) pending.remove();
          pending = null;
        } else if (ev.event === "done") {
          finished = true;
          confirm(out, ev.data.message);
          if (ev.data.reply) addMessage(ev.data.reply, pending);
          else if (pending) pending.remove();
          pending = null;
          if (ev.data.handoff) onHandoff(ev.data.handoff);
        } else if (ev.event === "error") {
          throw new ApiError(500, ev.data.error && ev.data.error.message);
        }
      };
      if ((res.headers.get("Content-Type") || "").includes("text/event-stream")) await readSSE(res, onEvent);
      else onEvent({ event: "done", data: await res.json() }); // a proxy that dropped the stream
      if (!finished) throw new ApiError(0, "the answer stream ended early");
    } catch (err) {
      if (pending) pending.remove();
      if (c && conv !== c) return undefined; // that conversation was left: nothing to show
      if ((err.status === 404 || err.status === 401) && !out.renewed) {
        // The stored conversation is gone: start a new one and send it there.
        out.renewed = true;
        out.key = uuid();
        expire();
        outbox.push(out);
        logEl.append(out.node);
        return deliver(out);
      }
      if (out.node.dataset.id) {
        // Stored, but the answer was lost on the way: it is in the conversation.
        showAlert(explain(err), guarded(catchUp));
      } else {
        out.node.classList.add("failed");
        setState(out, `${t("notSent")} — `, true);
        showAlert(explain(err));
      }
    } finally {
      typingEl.hidden = true;
    }
    return undefined;
  };

  // -- talking to the loader -----------------------------------------------------------
  const tell = (type, extra) => {
    if (parent !== window && HOST) parent.postMessage({ ns: NS, type, ...extra }, HOST);
  };

  const setOpen = (value) => {
    isOpen = value;
    if (!isOpen) return;
    unread = 0;
    tell("unread", { count: 0 });
    input.focus();
  };

  const setIdentity = (user) => {
    identity = user && typeof user === "object" ? user : null;
    // A conversation belongs to the customer who started it: another signed-in
    // customer on this browser starts fresh (an anonymous one continues after sign-in).
    if (conv && conv.customer && conv.customer !== (identity && identity.id)) {
      clear();
      save();
    }
  };

  window.addEventListener("message", (e) => {
    if (e.source !== parent || e.origin !== HOST) return;
    const msg = e.data;
    if (!msg || msg.ns !== NS) return;
    if (msg.type === "init") {
      setIdentity(msg.user);
      setOpen(Boolean(msg.open));
    } else if (msg.type === "identify") {
      setIdentity(msg.user);
    } else if (msg.type === "reset") {
      identity = null;
      clear();
      save();
    } else if (msg.type === "open" || msg.type === "close") {
      setOpen(msg.type === "open");
    }
  });

  // Another tab of the same site started a new conversation: follow it.
  window.addEventListener("storage", (e) => {
    if (e.key !== KEY) return;
    const next = stored();
    if ((next && next.id) !== (conv && conv.id)) {
      clear();
      restore();
    }
  });

  // -- controls ------------------------------------------------------------------------
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    grow();
    submit(text);
  });
  const grow = () => {
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 120)}px`;
  };
  input.addEventListener("input", grow);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("composer").requestSubmit();
    }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") tell("close");
  });
  $("close").addEventListener("click", () => tell("close"));
  $("new").addEventListener("click", () => {
    clear();
    save();
    input.focus();
  });
  $("alert-retry").addEventListener("click", () => {
    const action = retryAction;
    hideAlert();
    if (action) action();
  });

  humanBtn.addEventListener("click", guarded(async () => {
    const c = await ensure();
    const res = await call("POST", at(c, "/handoff"), undefined, auth(c));
    onHandoff(await res.json());
    await catchUp(); // the notice is stored as a message: show it now, not on the stream's next poll
  }));

  emailForm.addEventListener("submit", guarded(async (e) => {
    if (e) e.preventDefault();
    const email = $("email").value.trim();
    if (!email) return;
    await call("POST", at(conv, "/followup"), { email }, auth(conv));
    emailForm.hidden = true;
    await catchUp();
  }));

  for (const btn of scores) {
    btn.addEventListener("click", () => {
      picked = Number(btn.value);
      scores.forEach((b) => b.setAttribute("aria-pressed", String(b === btn)));
      $("csat-send").disabled = false;
    });
  }
  const rated = () => {
    conv.rated = true;
    save();
    csatEl.hidden = true;
    notice(t("rateThanks"));
  };
  $("csat-send").addEventListener("click", guarded(async () => {
    const comment = $("csat-comment").value.trim();
    try {
      await call("POST", at(conv, "/csat"), { score: picked, comment: comment || undefined }, auth(conv));
    } catch (err) {
      if (err.status !== 409) throw err; // 409: rated already (another tab)
    }
    rated();
  }));

  // -- start ---------------------------------------------------------------------------
  (async () => {
    await loadStrings();
    const labels = ["openChat", "closeChat", "frameTitle", "unread"];
    tell("ready", { strings: Object.fromEntries(labels.map((k) => [k, t(k)])) });
    await restore();
    live = true; // from now on, answers that arrive while the panel is closed are unread
  })();
})();
