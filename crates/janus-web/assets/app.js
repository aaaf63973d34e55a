// k8s-janus web UI behaviour. Loaded as a file (CSP: script-src 'self'); no inline handlers anywhere.
(function () {
  "use strict";

  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }
  window.janusCsrf = csrf;

  // Countdowns: <span class="countdown" data-expires="RFC3339">.
  function tick() {
    var now = Date.now();
    document.querySelectorAll(".countdown[data-expires]").forEach(function (el) {
      var t = Date.parse(el.getAttribute("data-expires"));
      if (isNaN(t)) return;
      var s = Math.max(0, Math.floor((t - now) / 1000));
      var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
      el.textContent = (h > 0 ? h + "h " : "") + (h > 0 || m > 0 ? m + "m " : "") + r + "s";
    });
  }
  setInterval(tick, 1000);
  tick();

  // Confirmation for destructive buttons: <form data-confirm="text">.
  document.addEventListener("submit", function (e) {
    var f = e.target;
    if (f && f.getAttribute && f.getAttribute("data-confirm")) {
      if (!window.confirm(f.getAttribute("data-confirm"))) e.preventDefault();
    }
  });

  // Live updates: <main data-live> is refreshed in place when a visible request changes.
  var main = document.querySelector("main[data-live]");
  if (main && window.EventSource) {
    var pending = null;
    // Choices made in forms of <main> but not submitted yet (an "Approve for" duration, a typed reason):
    // kept across a refresh, keyed by form action, field name and position.
    var changedFields = function () {
      var out = {};
      main.querySelectorAll("form").forEach(function (f) {
        var seen = {};
        Array.prototype.forEach.call(f.elements, function (c) {
          if (!c.name || c.type === "hidden" || c.type === "submit") return;
          var key = (f.getAttribute("action") || "") + "|" + c.name;
          seen[key] = (seen[key] || 0) + 1;
          key += "|" + seen[key];
          if (c.tagName === "SELECT") {
            var d = Array.prototype.filter.call(c.options, function (o) { return o.defaultSelected; })[0] || c.options[0];
            if (d && c.value !== d.value) out[key] = { value: c.value };
          } else if (c.type === "checkbox" || c.type === "radio") {
            if (c.checked !== c.defaultChecked) out[key] = { checked: c.checked };
          } else if (c.value !== c.defaultValue) {
            out[key] = { value: c.value };
          }
        });
      });
      return out;
    };
    var restoreFields = function (kept) {
      main.querySelectorAll("form").forEach(function (f) {
        var seen = {};
        Array.prototype.forEach.call(f.elements, function (c) {
          if (!c.name || c.type === "hidden" || c.type === "submit") return;
          var key = (f.getAttribute("action") || "") + "|" + c.name;
          seen[key] = (seen[key] || 0) + 1;
          var k = kept[key + "|" + seen[key]];
          if (!k) return;
          if ("checked" in k) c.checked = k.checked; else c.value = k.value;
        });
      });
    };
    var refresh = function () {
      if (pending) return;
      pending = setTimeout(function () {
        pending = null;
        var active = document.activeElement;
        if (active && (active.tagName === "INPUT" || active.tagName === "TEXTAREA" || active.tagName === "SELECT") && main.contains(active) && active.value) {
          return; // never throw away what someone is typing
        }
        fetch(location.href, { headers: { "X-Janus-Fragment": "1" }, credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.text() : null; })
          .then(function (html) {
            if (html === null) return;
            var kept = changedFields();
            main.innerHTML = html;
            restoreFields(kept);
            tick();
            document.dispatchEvent(new Event("janus:refreshed"));
          });
      }, 250);
    };
    var es = new EventSource("/api/v1/events");
    // A change between rendering this page and the stream being open would otherwise be missed: catch up
    // once each time the stream (re)opens.
    es.addEventListener("open", refresh);
    es.addEventListener("request", refresh);
    es.addEventListener("resync", refresh);
  }

  // Request form: searchable namespace list, reloaded when the cluster changes.
  var form = document.querySelector("form#request-form");
  if (form) {
    var cluster = form.querySelector("select[name=cluster]");
    var list = form.querySelector(".nslist");
    var filter = form.querySelector("input#ns-filter");
    var applyFilter = function () {
      var q = (filter.value || "").toLowerCase();
      list.querySelectorAll("label").forEach(function (l) {
        l.classList.toggle("hidden", q !== "" && l.textContent.toLowerCase().indexOf(q) < 0);
      });
    };
    if (filter) filter.addEventListener("input", applyFilter);
    if (cluster) cluster.addEventListener("change", function () {
      list.textContent = "Loading…";
      fetch("/api/v1/clusters/" + encodeURIComponent(cluster.value) + "/namespaces", { credentials: "same-origin" })
        .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, j: j }; }); })
        .then(function (res) {
          list.textContent = "";
          if (!res.ok) { var p = document.createElement("p"); p.className = "error"; p.textContent = res.j.error || "cannot list namespaces"; list.appendChild(p); return; }
          res.j.namespaces.forEach(function (ns) {
            var l = document.createElement("label");
            var c = document.createElement("input");
            c.type = "checkbox"; c.name = "namespaces"; c.value = ns;
            l.appendChild(c); l.appendChild(document.createTextNode(ns));
            list.appendChild(l);
          });
          if (res.j.namespaces.length === 0) list.textContent = "No namespaces can be requested on this cluster.";
          applyFilter();
        })
        .catch(function () { list.textContent = "Cannot reach the server."; });
    });
  }
})();
