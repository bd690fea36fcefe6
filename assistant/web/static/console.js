/*
 * Support console: keeps the server-rendered pages live over the agent JSON API.
 *
 * No framework and no build step. Everything that comes from the server (customer text
 * above all) reaches the page through textContent / createElement, never innerHTML, so
 * it can only ever be text. Requests that change something carry the session's CSRF
 * token (from <meta name="csrf-token">) in X-CSRF-Token; the cookie alone is refused.
 */
(function () {
  'use strict';

  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var CSRF = csrfMeta ? csrfMeta.getAttribute('content') : '';
  var AGENT_ID = document.body.dataset.agentId || '';
  var AGENT_NAME = document.body.dataset.agentName || 'You';
  var PRIORITY_NAMES = ['routine', 'low', 'normal', 'high', 'urgent'];
  var RECONNECT_MIN_MS = 1000;
  var RECONNECT_MAX_MS = 15000;
  var TICK_MS = 30000;

  // --- small helpers -----------------------------------------------------------------

  /** createElement with a class, text and attributes; children are appended in order. */
  function el(tag, options, children) {
    var node = document.createElement(tag);
    options = options || {};
    if (options.className) node.className = options.className;
    if (options.text !== undefined && options.text !== null) node.textContent = String(options.text);
    var attrs = options.attrs || {};
    Object.keys(attrs).forEach(function (name) {
      if (attrs[name] !== undefined && attrs[name] !== null) node.setAttribute(name, String(attrs[name]));
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  var announceTimer = null;
  /** Say something in the polite live region (also shown as a toast). */
  function announce(text) {
    var region = document.getElementById('announcer');
    if (!region) return;
    // Emptied first so the same sentence twice is announced twice.
    region.textContent = '';
    window.clearTimeout(announceTimer);
    window.setTimeout(function () { region.textContent = text; }, 30);
    announceTimer = window.setTimeout(function () { region.textContent = ''; }, 10000);
  }

  /** Same rule as console.py's format_duration. */
  function formatDuration(seconds) {
    var minutes = Math.floor(Math.max(seconds, 0) / 60);
    if (minutes < 1) return '<1 min';
    if (minutes < 60) return minutes + ' min';
    var hours = Math.floor(minutes / 60);
    minutes = minutes % 60;
    if (hours < 24) return minutes ? hours + ' h ' + minutes + ' min' : hours + ' h';
    var days = Math.floor(hours / 24);
    hours = hours % 24;
    return hours ? days + ' d ' + hours + ' h' : days + ' d';
  }

  function slaText(dueMs, nowMs) {
    var left = (dueMs - nowMs) / 1000;
    return left >= 0 ? 'due in ' + formatDuration(left) : 'overdue by ' + formatDuration(-left);
  }

  function clockText(iso) {
    var date = new Date(iso);
    if (isNaN(date.getTime())) return '';
    return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  /** Server-rendered times are UTC; show them in the agent's own time zone. */
  function localizeTimes(root) {
    root.querySelectorAll('time.js-clock').forEach(function (node) {
      var text = clockText(node.getAttribute('datetime'));
      if (text) node.textContent = text;
    });
    root.querySelectorAll('time.js-date').forEach(function (node) {
      var date = new Date(node.getAttribute('datetime'));
      if (!isNaN(date.getTime())) node.textContent = date.toLocaleString();
    });
  }

  function loginUrl() {
    return '/console/login?next=' + encodeURIComponent(window.location.pathname);
  }

  /** fetch() against the agent API: JSON in and out, CSRF header on writes. */
  function api(method, url, payload) {
    var headers = { Accept: 'application/json' };
    if (method !== 'GET') headers['X-CSRF-Token'] = CSRF;
    var init = { method: method, headers: headers, credentials: 'same-origin' };
    if (payload !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(payload);
    }
    return fetch(url, init).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (data) {
        if (response.status === 401) {
          // The session ended (signed out elsewhere, or expired): sign in again.
          window.location.assign(loginUrl());
        }
        var message = data && data.error && data.error.message
          ? data.error.message : 'The request failed (HTTP ' + response.status + ').';
        return { ok: response.ok, status: response.status, data: data, message: message };
      });
    }, function () {
      return { ok: false, status: 0, data: null,
        message: 'The server could not be reached. Check the connection and try again.' };
    });
  }

  /**
   * An EventSource that reconnects itself with backoff. makeUrl is called on every
   * (re)connect so the conversation stream can resume after the last event it handled.
   */
  function liveStream(makeUrl, handlers) {
    var indicator = document.getElementById('live-state');
    var source = null;
    var delay = RECONNECT_MIN_MS;
    var closed = false;

    function show(state, text) {
      if (!indicator) return;
      indicator.dataset.state = state;
      indicator.textContent = text;
    }

    function connect() {
      if (closed) return;
      source = new EventSource(makeUrl());
      Object.keys(handlers).forEach(function (type) {
        source.addEventListener(type, function (event) {
          var data;
          try { data = JSON.parse(event.data); } catch (err) { return; }
          handlers[type](data, event);
        });
      });
      source.addEventListener('open', function () {
        delay = RECONNECT_MIN_MS;
        show('live', 'Live');
      });
      source.addEventListener('error', function () {
        // Reconnect here rather than through the browser's own retry, whose URL would
        // still carry the position the page started from.
        source.close();
        if (closed) return;
        show('offline', 'Connection lost, reconnecting…');
        // A 401 from /me means the session is gone: api() sends the agent to sign in.
        api('GET', '/v1/agent/me').then(function () {
          window.setTimeout(connect, delay);
          delay = Math.min(delay * 2, RECONNECT_MAX_MS);
        });
      });
    }

    window.addEventListener('pagehide', function () {
      closed = true;
      if (source) source.close();
    });
    connect();
  }

  /** Ctrl+Enter (Cmd+Enter on a Mac) in a textarea submits its form. */
  function submitOnCtrlEnter(textarea) {
    textarea.addEventListener('keydown', function (event) {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        if (textarea.form) textarea.form.requestSubmit();
      }
    });
  }

  // --- header: presence ------------------------------------------------------------------

  function initPresence() {
    var toggle = document.getElementById('presence');
    if (!toggle) return;
    toggle.addEventListener('click', function () {
      var online = toggle.getAttribute('aria-pressed') !== 'true';
      toggle.disabled = true;
      api('POST', '/v1/agent/presence', { online: online }).then(function (result) {
        toggle.disabled = false;
        if (!result.ok) {
          announce(result.message);
          return;
        }
        toggle.setAttribute('aria-pressed', result.data.online ? 'true' : 'false');
        announce(result.data.online
          ? 'You are available: new hand-offs can come to you.'
          : 'You are away: customers are not routed to you.');
      });
    });
  }

  // --- queue page --------------------------------------------------------------------

  function initQueue() {
    var table = document.getElementById('queue-table');
    var body = document.getElementById('queue-body');
    var empty = document.getElementById('queue-empty');
    var count = document.getElementById('queue-count');
    // Server clock minus ours, so waiting times and SLAs tick on the server's time.
    var offset = 0;
    var known = null;

    function now() { return Date.now() + offset; }

    /** One row; the same markup as queue.html renders. */
    function renderRow(item) {
      var h = item.handoff;
      var summary = (item.context && item.context.summary) || [];
      var summaryId = 'summary-' + h.id;
      var row = el('tr', { attrs: { 'data-handoff-id': h.id } });
      row.appendChild(el('td', {}, [
        el('span', {
          className: 'priority priority-' + h.priority,
          text: 'P' + h.priority + ' ' + (PRIORITY_NAMES[h.priority] || ''),
        }),
      ]));
      row.appendChild(el('td', { text: h.team }));
      row.appendChild(el('td', {}, [
        el('time', { className: 'js-waiting', attrs: { datetime: h.created_at } }),
      ]));
      row.appendChild(el('td', {}, [
        el('time', { className: 'js-sla sla', attrs: { datetime: h.due_at } }),
      ]));
      row.appendChild(el('td', {}, [
        el('ul', { className: 'tags' }, (h.reasons || []).map(function (reason) {
          return el('li', { text: String(reason).replace(/_/g, ' ') });
        })),
      ]));
      row.appendChild(el('td', {}, [
        el('ul', { className: 'summary', attrs: { id: summaryId } }, summary.map(function (line) {
          return el('li', { text: line });
        })),
      ]));
      row.appendChild(el('td', { className: 'row-actions' }, [
        el('button', {
          className: 'claim',
          text: 'Claim',
          attrs: {
            type: 'button',
            'data-handoff-id': h.id,
            'data-conversation-id': h.conversation_id,
            'aria-describedby': summaryId,
          },
        }),
        el('a', {
          text: 'View',
          attrs: {
            href: '/console/conversations/' + encodeURIComponent(h.conversation_id),
            'aria-describedby': summaryId,
          },
        }),
      ]));
      return row;
    }

    /** Waiting times and SLA countdowns, from the timestamps in the rows. */
    function tick() {
      var at = now();
      body.querySelectorAll('tr').forEach(function (row) {
        var waiting = row.querySelector('time.js-waiting');
        var sla = row.querySelector('time.js-sla');
        var created = Date.parse(waiting.getAttribute('datetime'));
        var due = Date.parse(sla.getAttribute('datetime'));
        if (!isNaN(created)) waiting.textContent = formatDuration((at - created) / 1000);
        if (!isNaN(due)) {
          sla.textContent = slaText(due, at);
          row.classList.toggle('overdue', at > due);
        }
      });
    }

    function render(items) {
      if (items.length) {
        var first = items[0].handoff;
        var serverNow = Date.parse(first.created_at) + first.waiting_seconds * 1000;
        if (!isNaN(serverNow)) offset = serverNow - Date.now();
      }
      // Keep keyboard focus on the same hand-off's button across re-renders.
      var focused = document.activeElement;
      var focusedRow = focused && body.contains(focused) ? focused.closest('tr') : null;
      var focusedId = focusedRow ? focusedRow.dataset.handoffId : null;
      var focusedSelector = focused && focused.matches('button.claim') ? 'button.claim' : 'a';

      var ids = new Set();
      var fresh = 0;
      var rows = items.map(function (item) {
        var row = renderRow(item);
        ids.add(item.handoff.id);
        if (known && !known.has(item.handoff.id)) {
          row.classList.add('new');
          fresh += 1;
        }
        return row;
      });
      body.replaceChildren.apply(body, rows);
      tick();
      table.hidden = items.length === 0;
      empty.hidden = items.length !== 0;
      count.textContent = items.length + ' waiting';
      if (fresh) announce(fresh === 1 ? 'A new hand-off is waiting.' : fresh + ' new hand-offs are waiting.');
      known = ids;

      if (focusedId) {
        var again = body.querySelector('tr[data-handoff-id="' + CSS.escape(focusedId) + '"]');
        var target = again ? again.querySelector(focusedSelector) : null;
        if (target) target.focus();
      }
    }

    body.addEventListener('click', function (event) {
      var button = event.target.closest('button.claim');
      if (!button) return;
      button.disabled = true;
      var handoffId = button.dataset.handoffId;
      var conversationId = button.dataset.conversationId;
      api('POST', '/v1/agent/handoffs/' + encodeURIComponent(handoffId) + '/claim')
        .then(function (result) {
          if (result.ok) {
            window.location.assign('/console/conversations/' + encodeURIComponent(conversationId));
            return;
          }
          button.disabled = false;
          announce(result.status === 409 ? 'Someone else claimed it.' : result.message);
        });
    });

    known = new Set(Array.prototype.map.call(body.querySelectorAll('tr'), function (row) {
      return row.dataset.handoffId;
    }));
    liveStream(function () { return '/v1/agent/queue/events'; }, {
      queue: function (data) { render(data.items || []); },
    });
    window.setInterval(tick, TICK_MS);
  }

  // --- conversation page -------------------------------------------------------------

  function authorLabel(role, author) {
    if (role === 'customer') return 'Customer';
    if (role === 'assistant') return 'Bot';
    if (role === 'agent') return author ? 'Agent · ' + author : 'Agent';
    if (role === 'system') return 'System';
    return role ? role.charAt(0).toUpperCase() + role.slice(1) : 'Unknown';
  }

  /** A transcript entry or a note; the same markup as conversation.html renders. */
  function renderEntry(className, idName, id, who, createdAt, text) {
    var attrs = {};
    attrs[idName] = id;
    return el('li', { className: className, attrs: attrs }, [
      el('p', { className: 'msg-meta' }, [
        el('span', { className: 'msg-author', text: who }),
        document.createTextNode(' '),
        el('time', { className: 'js-clock', text: clockText(createdAt), attrs: { datetime: createdAt } }),
      ]),
      el('p', { className: 'msg-text', text: text }),
    ]);
  }

  function initConversation() {
    var root = document.getElementById('conversation');
    var conversationId = root.dataset.conversationId;
    var base = '/v1/agent/conversations/' + encodeURIComponent(conversationId);
    var cursor = Number(root.dataset.cursor) || 0;
    var handoffId = root.dataset.handoffId || '';
    var transcript = document.getElementById('transcript');
    var notes = document.getElementById('notes');
    var notesEmpty = document.getElementById('notes-empty');
    var ownership = document.getElementById('ownership');
    var conversationStatus = document.getElementById('conversation-status');
    var shownMessages = new Set();
    var shownNotes = new Set();
    transcript.querySelectorAll('[data-message-id]').forEach(function (node) {
      shownMessages.add(String(node.dataset.messageId));
    });
    notes.querySelectorAll('[data-note-id]').forEach(function (node) {
      shownNotes.add(String(node.dataset.noteId));
    });

    /** Show the controls of a state: queued, mine, other, closed or none. */
    function setState(state, sentence) {
      root.dataset.state = state;
      root.querySelectorAll('[data-show]').forEach(function (node) {
        node.hidden = node.dataset.show.split(' ').indexOf(state) < 0;
      });
      if (sentence) ownership.textContent = sentence;
    }

    /** Same rule as console.py's handoff_state, from a hand-off as the API returns it. */
    function applyHandoff(handoff, holderName) {
      handoffId = handoff.id;
      if (handoff.team) root.dataset.team = handoff.team;
      if (handoff.status === 'queued') {
        setState('queued', 'Waiting in the ' + handoff.team + ' queue.');
      } else if (handoff.status === 'assigned') {
        if (handoff.agent_id === AGENT_ID) setState('mine', 'You are handling this conversation.');
        else setState('other', (holderName || 'Another agent') + ' is handling this conversation.');
      } else if (handoff.status === 'resolved') {
        setState('closed', 'Resolved (' + (handoff.resolution_code || 'no code') + ').');
      } else {
        setState('closed', 'Returned to the bot.');
      }
    }

    function appendMessage(message) {
      var key = String(message.id);
      if (shownMessages.has(key)) return;
      shownMessages.add(key);
      transcript.appendChild(renderEntry(
        'msg msg-' + message.role, 'data-message-id', message.id,
        authorLabel(message.role, message.author), message.created_at, message.text));
    }

    function appendNote(note) {
      var key = String(note.id);
      if (shownNotes.has(key)) return;
      shownNotes.add(key);
      notes.appendChild(renderEntry(
        'note', 'data-note-id', note.id, note.agent_name || 'Agent', note.created_at, note.text));
      notesEmpty.hidden = true;
    }

    /** Events arrive in id order; anything at or before the cursor was already handled. */
    function fresh(event) {
      var id = Number(event.lastEventId);
      if (!id) return true;
      if (id <= cursor) return false;
      cursor = id;
      return true;
    }

    // The context packet (summary, trajectory, articles tried) is rendered by the server;
    // when the customer writes, fetch the page again and swap in its fresh context panel.
    // DOMParser never runs scripts, and the server escaped every piece of text.
    var contextTimer = null;
    function refreshContext() {
      window.clearTimeout(contextTimer);
      contextTimer = window.setTimeout(function () {
        fetch(window.location.pathname, { credentials: 'same-origin' }).then(function (r) {
          return r.ok ? r.text() : null;
        }).then(function (html) {
          if (!html) return;
          var fresh = new DOMParser().parseFromString(html, 'text/html').querySelector('aside.context');
          var current = document.querySelector('aside.context');
          if (fresh && current) {
            current.replaceWith(document.importNode(fresh, true));
            localizeTimes(document);
          }
        }).catch(function () { /* the next message tries again */ });
      }, 500);
    }

    liveStream(function () { return base + '/events?after=' + cursor; }, {
      message: function (data, event) {
        if (fresh(event) && data.message) {
          appendMessage(data.message);
          if (data.message.role === 'customer') refreshContext();
        }
      },
      note: function (data, event) {
        if (!fresh(event)) return;
        var payload = data.payload || {};
        appendNote({ id: event.lastEventId, text: payload.text || '',
          agent_name: payload.agent_name, created_at: data.created_at });
      },
      status: function (data, event) {
        if (!fresh(event)) return;
        var payload = data.payload || {};
        conversationStatus.textContent = data.status;
        var kind = data.event;
        if (kind === 'handoff.enqueued' || kind === 'handoff.released') {
          applyHandoff({ id: payload.handoff_id || handoffId, status: 'queued',
            team: payload.team || root.dataset.team });
        } else if (kind === 'handoff.claimed' || kind === 'handoff.reassigned') {
          applyHandoff({ id: payload.handoff_id || handoffId, status: 'assigned',
            agent_id: payload.agent_id }, payload.agent_name);
        } else if (kind === 'handoff.resolved') {
          applyHandoff({ id: payload.handoff_id || handoffId, status: 'resolved',
            resolution_code: payload.resolution_code });
        } else if (kind === 'handoff.returned') {
          applyHandoff({ id: payload.handoff_id || handoffId, status: 'returned' });
        }
      },
      log: function (data, event) { fresh(event); },
    });

    /** Run a hand-off action from a button: disable it while the request is out. */
    function action(button, method, url, payload, done) {
      button.disabled = true;
      return api(method, url, payload).then(function (result) {
        button.disabled = false;
        if (result.ok) done(result.data);
        else announce(result.status === 409 && /claim/.test(url) ? 'Someone else claimed it.' : result.message);
        return result;
      });
    }

    var claimButton = document.getElementById('claim');
    claimButton.addEventListener('click', function () {
      action(claimButton, 'POST', '/v1/agent/handoffs/' + encodeURIComponent(handoffId) + '/claim',
        undefined, function (handoff) {
          applyHandoff(handoff);
          announce('You claimed the conversation.');
          document.getElementById('reply').focus();
        });
    });

    var releaseButton = document.getElementById('release');
    releaseButton.addEventListener('click', function () {
      action(releaseButton, 'POST',
        '/v1/agent/handoffs/' + encodeURIComponent(handoffId) + '/release', undefined,
        function (handoff) {
          applyHandoff(handoff);
          announce('Released: the conversation is back in the queue.');
          claimButton.focus();
        });
    });

    var returnButton = document.getElementById('return-to-bot');
    returnButton.addEventListener('click', function () {
      action(returnButton, 'POST', base + '/return-to-bot', undefined, function (handoff) {
        applyHandoff(handoff);
        announce('The conversation is back with the bot.');
        ownership.focus();
      });
    });

    var resolveForm = document.getElementById('resolve-form');
    resolveForm.addEventListener('submit', function (event) {
      event.preventDefault();
      var code = document.getElementById('resolution-code').value;
      action(resolveForm.querySelector('button'), 'POST', base + '/resolve',
        { resolution_code: code }, function (handoff) {
          applyHandoff(handoff);
          announce('Resolved as ' + code + '.');
          ownership.focus();
        });
    });

    var replyForm = document.getElementById('reply-form');
    var replyBox = document.getElementById('reply');
    submitOnCtrlEnter(replyBox);
    replyForm.addEventListener('submit', function (event) {
      event.preventDefault();
      var text = replyBox.value.trim();
      if (!text) {
        announce('Write a reply first.');
        return;
      }
      action(replyForm.querySelector('button'), 'POST', base + '/messages', { text: text },
        function (message) {
          appendMessage(message);
          replyBox.value = '';
          announce('Reply sent.');
        });
    });

    var noteForm = document.getElementById('note-form');
    var noteBox = document.getElementById('note');
    submitOnCtrlEnter(noteBox);
    noteForm.addEventListener('submit', function (event) {
      event.preventDefault();
      var text = noteBox.value.trim();
      if (!text) {
        announce('Write a note first.');
        return;
      }
      action(noteForm.querySelector('button'), 'POST', base + '/notes', { text: text },
        function (created) {
          appendNote({ id: created.id, text: text, agent_name: AGENT_NAME,
            created_at: new Date().toISOString() });
          noteBox.value = '';
          announce('Note added (staff only).');
        });
    });

    // The ownership sentence takes focus after actions that remove the focused button.
    ownership.setAttribute('tabindex', '-1');
  }

  // --- start ---------------------------------------------------------------------------

  function start() {
    localizeTimes(document);
    initPresence();
    var page = document.body.dataset.page;
    if (page === 'console/queue') initQueue();
    else if (page === 'console/conversation') initConversation();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
}());
