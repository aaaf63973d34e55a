// The terminal page: pods per granted namespace, shells in up to two panes, streamed logs, events and
// quick commands. Keystrokes go to the server as binary WebSocket frames; JSON text frames are control
// only, so anything typed (JSON included) is never mistaken for a control message.
(function () {
  "use strict";
  var app = document.getElementById("terminal-app");
  if (!app || !window.Terminal) return;
  var request = app.getAttribute("data-request");
  var cluster = app.getAttribute("data-cluster");
  var namespaces = (app.getAttribute("data-namespaces") || "").split(",").filter(Boolean);
  var current = namespaces[0];
  // What the request's role offers: "shell" (shells, logs, events), "logs" (logs and events only; the
  // server refuses a shell) or "debug" (an ephemeral container from an allowed image, attached to).
  var mode = app.getAttribute("data-mode") || "shell";
  var debugForm = document.getElementById("debug-form");
  var csrf = window.janusCsrf ? window.janusCsrf() : "";
  var enc = new TextEncoder();
  var notice = document.getElementById("term-notice");
  var panes = [makePane(0), makePane(1)];
  var activePane = 0;
  var chosen = {}; // "namespace/pod" -> container chosen in the pod list

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  // The grant is gone: stop polling, take away everything that opens a shell or logs, and say what ended
  // the access and when (the server renders that block; until it answers, a short placeholder stands).
  var ended = false;
  function accessEnded() {
    if (ended) return;
    ended = true;
    clearInterval(poll);
    clearInterval(expiryWatch);
    var intro = document.getElementById("term-intro");
    if (intro) intro.classList.add("hidden");
    app.querySelectorAll(".countdown[data-expires]").forEach(function (c) { c.removeAttribute("data-expires"); });
    ["ns-tabs", "split-toggle"].forEach(function (id) { var e = document.getElementById(id); if (e) e.classList.add("hidden"); });
    var side = app.querySelector(".term-side");
    if (side) side.classList.add("hidden");
    document.getElementById("pod-list").textContent = "";
    var layout = app.querySelector(".term-layout");
    layout.classList.add("ended");
    var box = el("div", "panel");
    box.id = "access-ended";
    box.setAttribute("role", "status");
    box.appendChild(el("p", "ended", "Access has ended."));
    var link = el("a", "button", "Request page");
    link.href = "/requests/" + encodeURIComponent(request);
    box.appendChild(link);
    app.insertBefore(box, layout);
    fetchEndedBlock(0);
  }
  // Fetches this page as a fragment: the server renders the ended block once it sees the end (the
  // controller may take a moment); while it still sees the access running, its new expiry is taken over.
  function fetchEndedBlock(attempt) {
    fetch(location.href, { headers: { "X-Janus-Fragment": "1" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        var doc = html === null ? null : new DOMParser().parseFromString(html, "text/html");
        var block = doc && doc.getElementById("access-ended");
        if (block) {
          var old = document.getElementById("access-ended");
          old.parentNode.replaceChild(document.importNode(block, true), old);
        } else if (attempt < 30) {
          setTimeout(function () { fetchEndedBlock(attempt + 1); }, 1000);
        }
      })
      .catch(function () { if (attempt < 30) setTimeout(function () { fetchEndedBlock(attempt + 1); }, 1000); });
  }
  // The countdown reached zero: ask the server whether the access really ended (an extension moves the
  // expiry; this page does not update itself live).
  var checking = false;
  var expiryWatch = setInterval(function () {
    var t = Date.parse(app.getAttribute("data-expires") || "");
    if (ended || checking || isNaN(t) || Date.now() < t) return;
    checking = true;
    fetch(location.href, { headers: { "X-Janus-Fragment": "1" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        var doc = html === null ? null : new DOMParser().parseFromString(html, "text/html");
        var fresh = doc && doc.getElementById("terminal-app");
        var next = fresh && fresh.getAttribute("data-expires");
        if (doc && doc.getElementById("access-ended")) { accessEnded(); return; }
        if (next && Date.parse(next) > t) {
          app.setAttribute("data-expires", next);
          app.querySelectorAll(".countdown").forEach(function (c) { c.setAttribute("data-expires", next); });
        }
        setTimeout(function () { checking = false; }, 2000);
      })
      .catch(function () { setTimeout(function () { checking = false; }, 2000); });
  }, 1000);
  function showNotice(text, bad) {
    notice.textContent = text;
    notice.classList.remove("hidden");
    notice.classList.toggle("bad", !!bad);
  }
  function api(path, opts) {
    opts = opts || {};
    opts.credentials = "same-origin";
    opts.headers = Object.assign({ "X-CSRF-Token": csrf }, opts.headers || {});
    return fetch(path, opts).then(function (r) {
      return r.text().then(function (t) {
        var j = null;
        try { j = t ? JSON.parse(t) : null; } catch (e) { j = null; }
        if (!r.ok) { var err = new Error((j && j.error) || ("HTTP " + r.status)); err.status = r.status; throw err; }
        return j;
      });
    });
  }

  function makePane(i) {
    var root = document.getElementById("pane-" + i);
    var pane = { i: i, root: root, host: root.querySelector(".xterm-host"), status: root.querySelector(".status"),
      close: root.querySelector("[data-close]"), term: null, fit: null, ws: null, logs: null };
    root.addEventListener("mousedown", function () { activePane = i; });
    pane.close.addEventListener("click", function () { reset(pane, "Closed."); });
    return pane;
  }

  function reset(pane, message) {
    if (pane.ws) { try { pane.ws.close(); } catch (e) {} pane.ws = null; }
    if (pane.logs) { pane.logs.abort(); pane.logs = null; }
    if (pane.term) { pane.term.dispose(); pane.term = null; }
    if (pane.follow) { pane.follow.remove(); pane.follow = null; }
    pane.host.textContent = "";
    pane.status.textContent = message || "";
    pane.close.classList.add("hidden");
  }

  // Under a debug role the same socket attaches to the debug container named (the server decides by the
  // request's role what the socket opens); `attach` only changes what the pane says meanwhile.
  function openShell(pane, ns, pod, container, attach) {
    reset(pane, (attach ? "Attaching to " + container + " in " : "Connecting to ") + pod + "…");
    activePane = pane.i;
    var term = new window.Terminal({ cursorBlink: true, convertEol: false, fontSize: 14, scrollback: 5000 });
    var fit = new window.FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(pane.host);
    try { fit.fit(); } catch (e) {}
    pane.term = term; pane.fit = fit;
    pane.close.classList.remove("hidden");
    var proto = location.protocol === "https:" ? "wss:" : "ws:";
    var q = "namespace=" + encodeURIComponent(ns) + "&pod=" + encodeURIComponent(pod) +
      (container ? "&container=" + encodeURIComponent(container) : "") +
      "&cols=" + term.cols + "&rows=" + term.rows + "&csrf=" + encodeURIComponent(csrf);
    var ws = new WebSocket(proto + "//" + location.host + "/ws/terminal/" + encodeURIComponent(request) + "?" + q);
    ws.binaryType = "arraybuffer";
    pane.ws = ws;
    ws.onmessage = function (ev) {
      if (typeof ev.data !== "string") { term.write(new Uint8Array(ev.data)); return; }
      var m; try { m = JSON.parse(ev.data); } catch (e) { return; }
      if (m.type === "connected") { pane.status.textContent = ns + "/" + pod + " (" + m.container + ") · recorded"; term.focus(); }
      else if (m.type === "idleWarning") { showNotice("No input for a while: this session closes and access is revoked in " + m.seconds + " s unless you type something.", false); }
      else if (m.type === "closed") {
        pane.status.textContent = "Session ended: " + m.reason; showNotice("Session ended: " + m.reason, true);
        if (/revoked|withdrawn|deleted|expired|access ended|idle/i.test(m.reason)) accessEnded();
      }
      else if (m.type === "error") { pane.status.textContent = m.message; showNotice(m.message, true); }
    };
    ws.onclose = function (ev) {
      if (pane.ws === ws) { pane.ws = null; if (!/ended/.test(pane.status.textContent)) pane.status.textContent = "Disconnected" + (ev.reason ? ": " + ev.reason : "."); }
    };
    ws.onerror = function () { pane.status.textContent = "The terminal could not connect (is the request still active?)."; };
    term.onData(function (d) { if (ws.readyState === 1) ws.send(enc.encode(d)); notice.classList.add("hidden"); });
    term.onBinary(function (d) {
      if (ws.readyState !== 1) return;
      var b = new Uint8Array(d.length); for (var k = 0; k < d.length; k++) b[k] = d.charCodeAt(k) & 255; ws.send(b);
    });
    term.onResize(function (s) { if (ws.readyState === 1) ws.send(JSON.stringify({ type: "resize", cols: s.cols, rows: s.rows })); });
    // Copy and paste of anything: Ctrl+Shift+C / Ctrl+Shift+V (plain Ctrl+C stays the interrupt key).
    term.attachCustomKeyEventHandler(function (e) {
      if (e.type !== "keydown" || !e.ctrlKey || !e.shiftKey) return true;
      if (e.code === "KeyC") { var s = term.getSelection(); if (s && navigator.clipboard) navigator.clipboard.writeText(s); return false; }
      if (e.code === "KeyV") { if (navigator.clipboard) navigator.clipboard.readText().then(function (t) { term.paste(t); }); return false; }
      return true;
    });
  }

  function openLogs(pane, ns, pod, container) {
    reset(pane, "Following logs of " + pod + (container ? " (" + container + ")" : "") + "…");
    var pre = el("pre", "logs");
    pre.setAttribute("tabindex", "0");
    pre.setAttribute("aria-label", "Logs of " + pod);
    pane.host.appendChild(pre);
    pane.close.classList.remove("hidden");
    // "Follow" keeps the newest line in view; unticked, the text stays where it was scrolled to.
    var follow = el("label", "follow");
    var box = el("input"); box.type = "checkbox"; box.checked = true;
    follow.appendChild(box); follow.appendChild(document.createTextNode("Follow"));
    pane.root.querySelector(".bar").insertBefore(follow, pane.close);
    pane.follow = follow;
    var ctrl = new AbortController();
    pane.logs = ctrl;
    var url = "/api/v1/requests/" + encodeURIComponent(request) + "/logs?namespace=" + encodeURIComponent(ns) +
      "&pod=" + encodeURIComponent(pod) + (container ? "&container=" + encodeURIComponent(container) : "");
    fetch(url, { credentials: "same-origin", signal: ctrl.signal }).then(function (r) {
      if (!r.ok) return r.json().then(function (j) { pane.status.textContent = j.error || "cannot follow logs"; });
      var reader = r.body.getReader(); var dec = new TextDecoder();
      // The server's closing line carries this stream's nonce (so a container cannot forge it); shown without it.
      var endNonce = r.headers.get("X-Janus-Stream-End");
      var endMark = endNonce ? "[log stream ended " + endNonce + ": " : null;
      pane.status.textContent = "Logs of " + ns + "/" + pod + (container ? " (" + container + ")" : "") + " · live";
      function pump() {
        return reader.read().then(function (res) {
          if (res.done) {
            if (endMark && pre.textContent.indexOf(endMark) >= 0) pre.textContent = pre.textContent.split(endMark).join("[log stream ended: ");
            pane.status.textContent += " · ended"; return;
          }
          var chunk = dec.decode(res.value, { stream: true });
          if (endMark) chunk = chunk.split(endMark).join("[log stream ended: ");
          pre.textContent += chunk;
          if (pre.textContent.length > 400000) pre.textContent = pre.textContent.slice(-300000);
          if (box.checked) pre.scrollTop = pre.scrollHeight;
          return pump();
        });
      }
      return pump();
    }).catch(function (e) { if (e.name !== "AbortError") pane.status.textContent = "Log stream failed: " + e.message; });
  }

  function loadPods() {
    if (ended) return;
    var list = document.getElementById("pod-list");
    api("/api/v1/requests/" + encodeURIComponent(request) + "/pods?namespace=" + encodeURIComponent(current))
      .then(function (j) {
        if (ended) return;
        list.textContent = "";
        podsShown = j.pods;
        fillDebugPods();
        if (!j.pods.length) { list.textContent = "No pods in " + current + (app.getAttribute("data-scope") ? " are in this request's scope." : "."); return; }
        j.pods.forEach(function (p) {
          var card = el("div", "pod");
          card.setAttribute("data-pod", p.name);
          card.appendChild(el("div", "name", p.name));
          card.appendChild(el("div", "small muted", p.phase + " · ready " + p.ready + " · restarts " + p.restarts));
          var sel = null;
          if (p.containers.length > 1) {
            sel = el("select"); sel.setAttribute("aria-label", "Container");
            p.containers.forEach(function (c) { var o = el("option", null, c); o.value = c; sel.appendChild(o); });
            // The list is rebuilt every few seconds: keep the container someone chose.
            var key = current + "/" + p.name;
            if (p.containers.indexOf(chosen[key]) >= 0) sel.value = chosen[key];
            sel.addEventListener("change", function () { chosen[key] = sel.value; });
            card.appendChild(sel);
          }
          var acts = el("div", "actions");
          var ns = current;
          var c = function () { return sel ? sel.value : p.containers[0]; };
          if (mode === "shell") {
            var b1 = el("button", null, "Shell"); b1.type = "button";
            b1.addEventListener("click", function () { openShell(panes[0], ns, p.name, c()); });
            var b2 = el("button", "secondary", "Shell in pane 2"); b2.type = "button";
            b2.addEventListener("click", function () { showSplit(true); openShell(panes[1], ns, p.name, c()); });
            acts.appendChild(b1); acts.appendChild(b2);
          }
          var b3 = el("button", mode === "logs" ? null : "secondary", "Logs"); b3.type = "button";
          b3.addEventListener("click", function () { var target = panes[1].root.classList.contains("hidden") ? panes[0] : panes[1]; openLogs(target, ns, p.name, c()); });
          acts.appendChild(b3);
          if (mode === "debug") {
            var b4 = el("button", null, "Debug"); b4.type = "button";
            b4.title = "Choose this pod in the debug form";
            b4.addEventListener("click", function () { pickForDebug(p.name, c()); });
            acts.appendChild(b4);
          }
          card.appendChild(acts);
          list.appendChild(card);
        });
      })
      .catch(function (e) {
        list.textContent = e.message;
        // The access ended (revoked, expired, withdrawn): stop asking every few seconds.
        if (e.status === 409 || e.status === 403 || e.status === 404) { accessEnded(); if (notice.classList.contains("hidden")) showNotice(e.message, true); }
      });
    api("/api/v1/requests/" + encodeURIComponent(request) + "/events?namespace=" + encodeURIComponent(current))
      .then(function (j) {
        var box = document.getElementById("event-list"); box.textContent = "";
        // The server orders events by when they were last seen (lastTimestamp, else the series or
        // eventTime of events.k8s.io writers) and gives that time as lastTimestamp.
        j.events.slice(-20).forEach(function (e) {
          var when = e.lastTimestamp ? new Date(e.lastTimestamp).toLocaleTimeString() + " " : "";
          var times = e.count > 1 ? " (x" + e.count + ")" : "";
          var row = el("div", null, when + (e.type || "") + " " + e.object + ": " + (e.reason || "") + " " + (e.message || "") + times);
          if (e.lastTimestamp) row.title = e.lastTimestamp;
          box.appendChild(row);
        });
        if (!j.events.length) box.textContent = "No events.";
      }).catch(function () {});
  }

  // The debug form: a pod of the list, the container to debug next to, and an image of the role's
  // allow-list. The server checks the image again (422 for any other) and starts the container with the
  // request's own token; the pane then attaches to it through the terminal socket.
  var podsShown = [];
  function fillDebugPods() {
    if (!debugForm) return;
    var podSel = debugForm.querySelector("#debug-pod");
    var keep = podSel.value;
    podSel.textContent = "";
    podsShown.forEach(function (p) { var o = el("option", null, p.name); o.value = p.name; podSel.appendChild(o); });
    if (keep && podsShown.some(function (p) { return p.name === keep; })) podSel.value = keep;
    fillDebugContainers();
  }
  function fillDebugContainers(preferred) {
    var podSel = debugForm.querySelector("#debug-pod");
    var cSel = debugForm.querySelector("#debug-target");
    var keep = preferred || cSel.value;
    var pod = podsShown.filter(function (p) { return p.name === podSel.value; })[0];
    cSel.textContent = "";
    (pod ? pod.containers : []).forEach(function (c) { var o = el("option", null, c); o.value = c; cSel.appendChild(o); });
    if (pod && pod.containers.indexOf(keep) >= 0) cSel.value = keep;
    debugForm.querySelector("button[type=submit]").disabled = !pod;
  }
  function pickForDebug(pod, container) {
    var podSel = debugForm.querySelector("#debug-pod");
    podSel.value = pod;
    fillDebugContainers(container);
    debugForm.querySelector("#debug-image").focus();
  }
  if (debugForm) {
    debugForm.querySelector("#debug-pod").addEventListener("change", function () { fillDebugContainers(); });
    debugForm.addEventListener("submit", function (e) {
      e.preventDefault();
      var status = debugForm.querySelector("#debug-status");
      var button = debugForm.querySelector("button[type=submit]");
      var ns = current;
      var pod = debugForm.querySelector("#debug-pod").value;
      var target = debugForm.querySelector("#debug-target").value;
      var image = debugForm.querySelector("#debug-image").value.trim();
      status.className = "small muted";
      status.textContent = "Starting a debug container from " + image + " next to " + target + "…";
      button.disabled = true;
      api("/api/v1/requests/" + encodeURIComponent(request) + "/debug", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ namespace: ns, pod: pod, targetContainer: target, image: image }) })
        .then(function (j) {
          button.disabled = false;
          status.textContent = "Debug container " + j.container + " runs in " + pod + ".";
          var pane = panes[1].root.classList.contains("hidden") ? panes[0] : panes[activePane];
          openShell(pane, ns, pod, j.container, true);
        })
        .catch(function (err) {
          button.disabled = false;
          status.className = "small error";
          status.textContent = err.message;
          showNotice(err.message, true);
        });
    });
  }

  function loadQuick() {
    var box = document.getElementById("quick-list");
    api("/api/v1/quick-commands?cluster=" + encodeURIComponent(cluster)).then(function (j) {
      box.textContent = "";
      j.quickCommands.forEach(function (q) {
        var row = el("div", "actions");
        var run = el("button", "secondary", q.label); run.type = "button"; run.title = q.command;
        run.addEventListener("click", function () {
          var p = panes[activePane];
          if (p.ws && p.ws.readyState === 1) { p.ws.send(enc.encode(q.command + "\r")); p.term.focus(); }
          else showNotice("Open a shell first.", false);
        });
        var del = el("button", "secondary", "×"); del.type = "button"; del.title = "Delete";
        del.addEventListener("click", function () { api("/api/v1/quick-commands/" + q.id, { method: "DELETE" }).then(loadQuick); });
        row.appendChild(run); row.appendChild(del); box.appendChild(row);
      });
    }).catch(function () {});
  }

  if (document.getElementById("quick-form")) document.getElementById("quick-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var f = e.target;
    api("/api/v1/quick-commands", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ cluster: cluster, label: f.label.value, command: f.command.value }) })
      .then(function () { f.reset(); loadQuick(); }).catch(function (err) { showNotice(err.message, true); });
  });

  function showSplit(on) {
    panes[1].root.classList.toggle("hidden", !on);
    document.getElementById("panes").classList.toggle("split", on);
    document.getElementById("split-toggle").textContent = on ? "Single view" : "Split view";
    panes.forEach(function (p) { if (p.fit) try { p.fit.fit(); } catch (e) {} });
  }
  document.getElementById("split-toggle").addEventListener("click", function () {
    var on = panes[1].root.classList.contains("hidden");
    if (!on) reset(panes[1], "Second pane: choose a pod.");
    showSplit(on);
  });

  document.querySelectorAll("#ns-tabs button").forEach(function (b) {
    b.addEventListener("click", function () {
      document.querySelectorAll("#ns-tabs button").forEach(function (x) { x.classList.remove("active"); });
      b.classList.add("active");
      current = b.getAttribute("data-ns");
      loadPods();
    });
  });
  window.addEventListener("resize", function () { panes.forEach(function (p) { if (p.fit) try { p.fit.fit(); } catch (e) {} }); });

  loadPods();
  if (document.getElementById("quick-form")) loadQuick();
  var poll = setInterval(loadPods, 5000);
})();
