// Replays an asciicast v2 recording with xterm.js (self-hosted; admins only).
(function () {
  "use strict";
  var host = document.getElementById("player");
  if (!host || !window.Terminal) return;
  var status = document.getElementById("player-status");
  var session = host.getAttribute("data-session");
  var header = null, events = [], term = null, timer = null;
  fetch("/api/v1/recordings/" + encodeURIComponent(session), { credentials: "same-origin" })
    .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.text(); })
    .then(function (text) {
      var lines = text.split("\n").filter(Boolean);
      header = JSON.parse(lines.shift());
      events = lines.map(function (l) { try { return JSON.parse(l); } catch (e) { return null; } }).filter(Boolean);
      status.textContent = events.length + " events · " + (events.length ? events[events.length - 1][0].toFixed(1) : 0) + " s";
      reset();
    })
    .catch(function (e) { status.textContent = "Cannot load the recording: " + e.message; });
  function reset() {
    if (timer) clearTimeout(timer);
    if (term) term.dispose();
    term = new window.Terminal({ cols: header.width || 80, rows: header.height || 24, disableStdin: true });
    term.open(host);
  }
  function apply(ev) {
    if (ev[1] === "o") term.write(ev[2]);
    else if (ev[1] === "r") { var m = /^(\d+)x(\d+)$/.exec(ev[2]); if (m) term.resize(+m[1], +m[2]); }
  }
  document.getElementById("play").addEventListener("click", function () {
    if (!header) return;
    reset();
    var speed = +document.getElementById("speed").value || 1;
    var i = 0, start = performance.now();
    (function step() {
      var now = (performance.now() - start) / 1000 * speed;
      while (i < events.length && events[i][0] <= now) apply(events[i++]);
      status.textContent = i < events.length ? "playing " + now.toFixed(1) + " s" : "done";
      if (i < events.length) timer = setTimeout(step, Math.min(200, Math.max(10, (events[i][0] - now) * 1000 / speed)));
    })();
  });
  document.getElementById("instant").addEventListener("click", function () {
    if (!header) return;
    reset();
    events.forEach(apply);
    status.textContent = "done";
  });
})();
