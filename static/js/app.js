/* Dashboard behaviour. Static file, no inline script anywhere (the CSP forbids it).
 *
 * Live updates follow the doorbell pattern (docs/architecture.md): Socket.IO events carry ids only; an
 * element that shows something marks itself with data-live="event ..." (and data-chat="<id>" when it
 * belongs to one chat) and carries its own hx-get with hx-trigger="refresh". On an event we trigger
 * "refresh" on the matching elements, and htmx fetches the server-rendered, escaped fragment.
 * Nothing here builds HTML from data.
 */
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // CSRF header on every htmx request (htmx 4: headers live in ctx.request.headers).
  document.addEventListener("htmx:config:request", function (e) {
    var ctx = e.detail && e.detail.ctx;
    if (ctx && ctx.request && ctx.request.headers) {
      ctx.request.headers["X-CSRFToken"] = csrfToken();
    }
  });

  // Confirmation for destructive plain forms (<form data-confirm="...">).
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      e.preventDefault();
    }
  }, true);

  // ------------------------------------------------------------------ refreshing fragments

  // State groups come from the server (webapp/states.py), so the browser never keeps its own copy.
  var STATES = (function () {
    var meta = document.querySelector('meta[name="sms-states"]');
    try { return JSON.parse(meta ? meta.getAttribute("content") : "{}"); } catch (e) { return {}; }
  })();
  var FAILED = STATES.trouble || [];
  var pending = new Map(); // element id -> timer; coalesces bursts of doorbells into one fetch
  var inflight = new Set(); // ids whose fragment is being fetched
  var dirty = new Set(); // ids that changed again while being fetched: fetch once more afterwards

  function refresh(el) {
    if (!el || !el.id || !window.htmx) return;
    // a fragment inside one that is being re-fetched will be replaced anyway; make sure that fetch repeats
    var outer = el.parentElement && el.parentElement.closest("[data-live][id]");
    if (outer && (inflight.has(outer.id) || pending.has(outer.id))) {
      if (inflight.has(outer.id)) dirty.add(outer.id);
      return;
    }
    var id = el.id;
    if (inflight.has(id)) { dirty.add(id); return; }
    if (pending.has(id)) return;
    pending.set(id, setTimeout(function () {
      pending.delete(id);
      var current = document.getElementById(id); // the element may have been swapped meanwhile
      if (!current) return;
      inflight.add(id);
      var done = function () {
        inflight.delete(id);
        if (dirty.delete(id)) refresh(document.getElementById(id));
      };
      var request = window.htmx.ajax("GET", current.getAttribute("hx-get"), {
        source: current, target: current, swap: "outerHTML"
      });
      if (request && request.then) request.then(done, done); else done();
    }, 30));
  }

  function liveElements(eventName, chatId) {
    return Array.prototype.filter.call(document.querySelectorAll("[data-live]"), function (el) {
      var events = el.getAttribute("data-live").split(/\s+/);
      if (events.indexOf(eventName) === -1) return false;
      var only = el.getAttribute("data-chat");
      return !only || chatId === undefined || chatId === null || String(chatId) === only;
    });
  }

  function refreshAll() {
    document.querySelectorAll("[data-live]").forEach(refresh);
  }

  // One transcript line shows a person's text and the state of its relay; find it by either id.
  function entryFor(messageId) {
    var wanted = String(messageId);
    return Array.prototype.find.call(document.querySelectorAll("[data-ids]"), function (el) {
      return el.getAttribute("data-ids").split(" ").indexOf(wanted) !== -1;
    });
  }

  // Keep the transcript scrolled to the newest message when the reader was already at the bottom.
  var stickToBottom = true;
  document.addEventListener("htmx:before:swap", function () {
    var list = document.getElementById("transcript");
    if (list) stickToBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
  });
  document.addEventListener("htmx:after:swap", function () {
    if (document.getElementById("transcript") && stickToBottom) {
      window.scrollTo(0, document.body.scrollHeight);
    }
  });

  // Times are rendered in UTC by the server; show them in the dispatcher's own time zone.
  var today = new Date().toDateString();
  var timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  var dateFmt = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
  function localizeTimes(root) {
    (root || document).querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when.getTime())) return;
      el.textContent = when.toDateString() === today ? timeFmt.format(when) : dateFmt.format(when);
      el.title = when.toLocaleString();
    });
  }
  document.addEventListener("htmx:after:swap", function () { localizeTimes(document); });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { localizeTimes(document); });
  } else {
    localizeTimes(document);
  }

  // ------------------------------------------------------------------ compose box: SMS part count as you type

  // Mirrors proxy.segments(): GSM 03.38 text is 160 characters in one SMS and 153 per part (an extension
  // character such as € counts twice); anything else is UCS-2, 70 in one SMS and 67 per part. The alphabet
  // comes from the server (data-gsm on the form), so it is defined once, in proxy.py.
  function smsCount(text, alphabet) {
    var basic = alphabet.basic, ext = alphabet.ext, units = 0, gsm = true;
    for (var i = 0; i < text.length; i++) {
      var ch = text.charAt(i);
      if (basic.indexOf(ch) !== -1) units += 1;
      else if (ext.indexOf(ch) !== -1) units += 2;
      else { gsm = false; break; }
    }
    if (!gsm) units = text.length; // UTF-16 code units, as the server counts them
    var single = gsm ? 160 : 70, per = gsm ? 153 : 67;
    var parts = units <= single ? 1 : Math.ceil(units / per);
    return Array.from(text).length + " characters" + (gsm || !text.length ? "" : " (unicode)") + " · " + parts +
      " SMS" + (parts > 1 ? " parts" : "");
  }

  function updateCount(form) {
    var box = form.querySelector("textarea[name=text]"), out = form.querySelector("#compose-count");
    if (!box || !out) return;
    var alphabet;
    try { alphabet = JSON.parse(form.getAttribute("data-gsm")); } catch (err) { return; }
    var both = form.querySelector("input[name=to][value=both]");
    out.textContent = smsCount(box.value.replace(/\r\n/g, "\n"), alphabet) + (both && both.checked ? " to each" : "");
  }

  document.addEventListener("input", function (e) {
    var form = e.target && e.target.closest && e.target.closest("#compose");
    if (form) updateCount(form);
  });
  document.addEventListener("change", function (e) {
    var form = e.target && e.target.closest && e.target.closest("#compose");
    if (form) updateCount(form);
  });

  // ------------------------------------------------------------------ time left: [data-deadline] ticks

  function timeLeft(iso) {
    var left = Math.floor((new Date(iso).getTime() - Date.now()) / 1000);
    if (isNaN(left)) return null;
    if (left <= 0) return "now";
    var d = Math.floor(left / 86400), h = Math.floor((left % 86400) / 3600);
    var m = Math.floor((left % 3600) / 60), s = left % 60;
    if (d) return "in " + d + " d " + h + " h";
    if (h) return "in " + h + " h " + (m < 10 ? "0" : "") + m + " min";
    if (m) return "in " + m + " min";
    return "in " + s + " s";
  }

  function tick() {
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      var text = timeLeft(el.getAttribute("data-deadline"));
      if (text !== null && el.textContent !== text) el.textContent = text;
    });
    // a chat that ended (live) takes no more messages: the compose box goes quiet
    var compose = document.getElementById("compose");
    if (compose && document.getElementById("chat-ended")) {
      compose.querySelectorAll("textarea, input, button").forEach(function (el) { el.disabled = true; });
      compose.classList.add("closed");
    }
  }
  setInterval(tick, 1000);
  document.addEventListener("htmx:after:swap", tick);

  // ------------------------------------------------------------------ simulator: reply target and newest text

  // The "Reply to" choice of each handset survives the live refreshes of its thread (which re-render the
  // select with the server's default); a tap on a received text chooses the number it came from.
  var replyTo = {}; // select id -> proxy number chosen by the tester
  function choose(select, value) {
    if (!Array.prototype.some.call(select.options, function (o) { return o.value === value; })) return;
    select.value = value;
    replyTo[select.id] = value;
  }
  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t && t.matches && t.matches("select.reply-to")) replyTo[t.id] = t.value;
  });
  document.addEventListener("click", function (e) {
    var sms = e.target && e.target.closest && e.target.closest(".sms[data-proxy]");
    var select = sms && sms.closest(".thread") && sms.closest(".thread").querySelector("select.reply-to");
    if (select) choose(select, sms.getAttribute("data-proxy"));
  });

  // Each handset's thread shows its newest text: scrolled to the bottom on load, after a refresh (unless the
  // tester had scrolled up to read) and always after they send.
  var threadAtBottom = {}; // thread id -> was scrolled to the bottom before the last swap
  var sentAt = {}; // thread id -> when its handset last sent a text
  function atBottom(list) { return list.scrollTop + list.clientHeight >= list.scrollHeight - 24; }
  function settleThreads() {
    document.querySelectorAll(".thread[id]").forEach(function (thread) {
      var list = thread.querySelector(".sms-thread"), select = thread.querySelector("select.reply-to");
      if (select && replyTo[select.id]) choose(select, replyTo[select.id]);
      if (list && threadAtBottom[thread.id] !== false) list.scrollTop = list.scrollHeight;
      delete threadAtBottom[thread.id];
    });
  }
  document.addEventListener("htmx:before:swap", function () {
    document.querySelectorAll(".thread[id] .sms-thread").forEach(function (list) {
      var id = list.closest(".thread").id;
      threadAtBottom[id] = atBottom(list) || Date.now() - (sentAt[id] || 0) < 5000; // just sent: show it
    });
  });
  document.addEventListener("submit", function (e) {
    var handset = e.target && e.target.closest && e.target.closest(".handset");
    var thread = handset && handset.querySelector(".thread[id]");
    if (thread) sentAt[thread.id] = Date.now();
  }, true);
  document.addEventListener("htmx:after:swap", settleThreads);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", settleThreads);
  } else {
    settleThreads();
  }

  // ------------------------------------------------------------------ Socket.IO

  function setStatus(state, text) {
    var el = document.getElementById("live-status");
    if (!el) return;
    el.setAttribute("data-state", state);
    el.textContent = text;
  }

  function connect() {
    if (!window.io || !document.getElementById("live-status")) return; // signed out: no socket
    // A websocket first: when the page goes (a dispatcher clicking on), the browser closes it and the server
    // frees the operator's live slot at once. Long polling, the fallback, is only noticed gone after the ping
    // timeout, so a few quick clicks used up SOCKETIO_MAX_PER_OPERATOR and the next page was refused.
    var socket = window.io({
      reconnectionDelayMax: 5000,
      transports: ["websocket", "polling"],
      tryAllTransports: true, // a proxy that refuses websockets still gets long polling
      closeOnBeforeunload: true // say goodbye on the way out, whichever transport is up
    });
    window.__socket = socket; // for tests and debugging

    socket.on("connect", function () {
      setStatus("live", "Live");
      refreshAll(); // catch up on anything that changed while we were not connected
    });
    var signingOut = false;
    socket.on("disconnect", function (reason) {
      setStatus("offline", "Reconnecting…");
      if (reason === "io server disconnect" && !signingOut) {
        // the server closed us (the session ended): a reload shows the sign-in page
        setTimeout(function () { window.location.reload(); }, 1000);
      }
    });
    socket.on("connect_error", function () {
      setStatus("offline", "Reconnecting…");
      if (!socket.active && !signingOut) {
        // refused (not signed in any more): a reload lands on the sign-in page
        setTimeout(function () { window.location.reload(); }, 2000);
      }
    });
    socket.on("signed_out", function () {
      // This operator signed out (here or in another tab). Wait for the sign-out response to clear the
      // cookie before navigating, so no request carries the old session after it.
      signingOut = true;
      setStatus("offline", "Signed out");
      setTimeout(function () { window.location.assign("/login"); }, 500);
    });

    socket.on("chats_changed", function (data) {
      liveElements("chats_changed", data && data.chat_id).forEach(refresh);
    });
    socket.on("chat_changed", function (data) {
      liveElements("chat_changed", data && data.chat_id).forEach(refresh);
    });
    socket.on("message_status", function (data) {
      if (!data) return;
      var line = entryFor(data.id);
      if (line) refresh(line);
      else liveElements("chat_changed", data.chat_id).forEach(refresh); // a line we do not show yet
      liveElements("message_status", data.chat_id).forEach(refresh);
      if (FAILED.indexOf(data.status) !== -1) {
        liveElements("chats_changed", data.chat_id).forEach(refresh); // lists show a "failed" marker
      }
    });
    socket.on("unrouted_changed", function () {
      liveElements("unrouted_changed").forEach(refresh);
    });
    socket.on("numbers_changed", function () {
      liveElements("numbers_changed").forEach(refresh);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", connect);
  } else {
    connect();
  }
})();
