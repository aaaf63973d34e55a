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

    // The governing policy of what is chosen, from GET /api/v1/policy: who approves, how many, the TTL
    // limits, the reason pattern (checked here as a hint only; the server decides) and whether break-glass
    // is offered. Everything is inserted as text.
    var hint = form.querySelector("#policy-hint");
    var glassBox = form.querySelector("#break-glass-box");
    var glass = form.querySelector("#break-glass");
    var glassMax = form.querySelector("#glass-max");
    var reason = form.querySelector("#reason");
    var reasonHint = form.querySelector("#reason-hint");
    var ttl = form.querySelector("#ttl");
    var rule = null; // { re: RegExp or null, text: "..." }
    var seq = 0, timer = null;
    var add = function (parent, tag, cls, text) {
      var e = document.createElement(tag);
      if (cls) e.className = cls;
      if (text !== undefined) e.textContent = text;
      parent.appendChild(e);
      return e;
    };
    var duration = function (secs) {
      secs = Math.max(0, secs | 0);
      var d = Math.floor(secs / 86400), h = Math.floor(secs % 86400 / 3600), m = Math.floor(secs % 3600 / 60), s = secs % 60;
      var parts = [];
      if (d) parts.push(d + "d");
      if (h) parts.push(h + "h");
      if (m) parts.push(m + "m");
      if (s || !parts.length) parts.push(s + "s");
      return parts.join(" ");
    };
    var approversText = function (a) {
      var parts = [];
      if (a.admins) parts.push("admins");
      (a.emails || []).forEach(function (e) { parts.push(e); });
      (a.groups || []).forEach(function (g) { parts.push("group " + g); });
      (a.owners || []).forEach(function (o) {
        var who = (o.emails || []).concat((o.groups || []).map(function (g) { return "group " + g; }));
        parts.push("owners of " + o.namespace + (who.length ? ": " + who.join(", ") : " (none named)"));
      });
      return parts.length ? parts.join(", ") : "nobody";
    };
    var checkReason = function () {
      if (!reasonHint) return;
      reasonHint.classList.remove("ok", "warn");
      if (!rule) { reasonHint.textContent = ""; return; }
      reasonHint.textContent = rule.text;
      if (rule.re && reason.value) reasonHint.classList.add(rule.re.test(reason.value) ? "ok" : "warn");
    };
    var setRule = function (r) {
      if (!r) { rule = null; checkReason(); return; }
      var re = null;
      try { re = new RegExp(r.pattern); } catch (e) { re = null; } // Rust syntax the browser lacks: the server checks
      rule = { re: re, text: "The reason must contain " + (r.description || "a match of " + r.pattern) + "." };
      checkReason();
    };
    var showGlass = function (allowed, max) {
      if (!glassBox) return;
      if (!allowed && glass) glass.checked = false;
      glassBox.classList.toggle("hidden", !allowed);
      if (glassMax) glassMax.textContent = max ? "Break-glass access lasts at most " + duration(max) + "." : "";
    };
    var render = function (ok, p) {
      hint.textContent = "";
      hint.classList.remove("hidden");
      if (ttl) Array.prototype.forEach.call(ttl.options, function (o) { o.disabled = false; });
      if (!ok) { add(hint, "p", "error", p.error || "the policy cannot be determined"); setRule(null); showGlass(false); return; }
      if (p.conflict) { add(hint, "p", "error", p.conflict); setRule(null); showGlass(false); return; }
      var line = add(hint, "p", "policy-line", "Policy ");
      add(line, "strong", "policy-name", p.policy);
      if (p.description) line.appendChild(document.createTextNode(" — " + p.description));
      var ul = add(hint, "ul", "small");
      add(ul, "li", "approvers", (p.approvalsRequired === 1 ? "1 approval needed" : p.approvalsRequired + " approvals needed") + " from: " + approversText(p.approvers || {}));
      var t = "Longest duration: " + duration(p.maxTtlSeconds);
      if (p.approvalTtlOptions && p.approvalTtlOptions.length) t += "; approvers may choose " + p.approvalTtlOptions.map(duration).join(", ");
      add(ul, "li", "ttl", t);
      if (p.reason) {
        var li = add(ul, "li", "reason", "The reason must contain " + (p.reason.description || "a match of " + p.reason.pattern) + ".");
        li.setAttribute("data-pattern", p.reason.pattern);
      }
      if (p.autoApproval && p.autoApproval.wouldApprove) add(ul, "li", "auto", "This request would be approved automatically now.");
      else if (p.autoApproval && p.autoApproval.whyNot) add(ul, "li", "auto muted", "No automatic approval: " + p.autoApproval.whyNot);
      setRule(p.reason || null);
      showGlass(!!p.breakGlassAllowed, p.breakGlassMaxTtlSeconds);
      // Durations above the policy's maximum cannot be asked for (the server refuses them too).
      if (ttl && p.maxTtlSeconds) {
        var best = null;
        Array.prototype.forEach.call(ttl.options, function (o) {
          o.disabled = Number(o.value) > p.maxTtlSeconds;
          if (!o.disabled) best = o;
        });
        if (ttl.selectedOptions[0] && ttl.selectedOptions[0].disabled && best) { ttl.value = best.value; policySoon(); }
      }
    };
    var loadPolicy = function () {
      var ns = Array.prototype.map.call(list.querySelectorAll("input[name=namespaces]:checked"), function (i) { return i.value; });
      var mine = ++seq;
      if (!ns.length) {
        hint.textContent = ""; hint.classList.add("hidden"); setRule(null); showGlass(false);
        if (ttl) Array.prototype.forEach.call(ttl.options, function (o) { o.disabled = false; });
        return;
      }
      var q = "cluster=" + encodeURIComponent(cluster.value) + "&namespaces=" + encodeURIComponent(ns.join(",")) +
        (ttl && ttl.value ? "&ttlSeconds=" + encodeURIComponent(ttl.value) : "");
      fetch("/api/v1/policy?" + q, { credentials: "same-origin" })
        .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, j: j }; }); })
        .then(function (res) { if (mine === seq) render(res.ok, res.j); })
        .catch(function () { if (mine === seq) render(false, { error: "Cannot reach the server." }); });
    };
    var policySoon = function () { clearTimeout(timer); timer = setTimeout(loadPolicy, 150); };
    if (hint) {
      list.addEventListener("change", policySoon);
      if (ttl) ttl.addEventListener("change", policySoon);
      if (reason) reason.addEventListener("input", checkReason);
      var shown = hint.querySelector("li.reason[data-pattern]");
      if (shown) setRule({ pattern: shown.getAttribute("data-pattern"), description: "" });
      if (shown) rule.text = shown.textContent;
      checkReason();
    }
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
          if (hint) policySoon();
        })
        .catch(function () { list.textContent = "Cannot reach the server."; });
    });
  }
})();
