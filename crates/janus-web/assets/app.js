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

  // Copy buttons: <button data-copy="ID"> copies the value of the element with that id (the API tokens
  // page's new token). The field is readonly and selected as well, so copying by hand works without it.
  document.addEventListener("click", function (e) {
    var b = e.target && e.target.closest ? e.target.closest("button[data-copy]") : null;
    if (!b) return;
    var field = document.getElementById(b.getAttribute("data-copy"));
    if (!field) return;
    field.focus();
    field.select();
    var done = function () { b.textContent = "Copied"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, function () { if (document.execCommand("copy")) done(); });
    } else if (document.execCommand("copy")) {
      done();
    }
  });

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
    var chosenNamespaces = function () {
      return Array.prototype.map.call(list.querySelectorAll("input[name=namespaces]:checked"), function (i) { return i.value; });
    };
    var getJson = function (url) {
      return fetch(url, { credentials: "same-origin" })
        .then(function (r) { return r.text().then(function (t) { var j = null; try { j = t ? JSON.parse(t) : null; } catch (e) { j = null; } return { ok: r.ok, status: r.status, j: j || {} }; }); });
    };
    var chosenRole = function () {
      var r = form.querySelector("input[name=role]:checked");
      return r ? r.value : "";
    };
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
        (ttl && ttl.value ? "&ttlSeconds=" + encodeURIComponent(ttl.value) : "") +
        (chosenRole() ? "&role=" + encodeURIComponent(chosenRole()) : "");
      fetch("/api/v1/policy?" + q, { credentials: "same-origin" })
        .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, j: j }; }); })
        .then(function (res) { if (mine === seq) render(res.ok, res.j); })
        .catch(function () { if (mine === seq) render(false, { error: "Cannot reach the server." }); });
    };
    // The roles the governing policy allows for what is chosen (GET /api/v1/roles): the others stay
    // listed, disabled, so nobody wonders where a role went; a chosen role that became unavailable
    // gives way to the first available one.
    var roleSeq = 0;
    var loadRoles = function () {
      var cards = form.querySelectorAll("#role-choice label.role-card");
      if (!cards.length) return;
      var ns = chosenNamespaces();
      var mine = ++roleSeq;
      var q = "cluster=" + encodeURIComponent(cluster.value) + (ns.length ? "&namespace=" + encodeURIComponent(ns.join(",")) : "");
      getJson("/api/v1/roles?" + q).then(function (res) {
        if (mine !== roleSeq || !res.ok || !res.j.roles) return;
        var allowed = res.j.roles.map(function (r) { return r.name; });
        var firstFree = null, lost = false;
        cards.forEach(function (c) {
          var input = c.querySelector("input[name=role]");
          var ok = allowed.indexOf(input.value) >= 0;
          input.disabled = !ok;
          c.classList.toggle("unavailable", !ok);
          c.title = ok ? "" : "Not allowed by the policy for the chosen namespaces";
          if (ok && !firstFree) firstFree = input;
          if (!ok && input.checked) lost = true;
        });
        if (lost && firstFree) { firstFree.checked = true; policySoon(); }
      }).catch(function () {});
    };
    var policySoon = function () { clearTimeout(timer); timer = setTimeout(function () { loadPolicy(); loadRoles(); }, 150); };
    if (hint) {
      list.addEventListener("change", policySoon);
      var roleBox = form.querySelector("#role-choice");
      if (roleBox) roleBox.addEventListener("change", policySoon);
      if (ttl) ttl.addEventListener("change", policySoon);
      if (reason) reason.addEventListener("input", checkReason);
      var shown = hint.querySelector("li.reason[data-pattern]");
      if (shown) setRule({ pattern: shown.getAttribute("data-pattern"), description: "" });
      if (shown) rule.text = shown.textContent;
      checkReason();
    }
    // Role and pod scope. The role cards are rendered by the server (GET /api/v1/roles lists the same);
    // the scope picker shows the detail of the chosen kind only, fills the workloads of the one chosen
    // namespace from GET /api/v1/clusters/{c}/workloads and previews what a selector matches from GET
    // /api/v1/clusters/{c}/pods, per chosen namespace. The server decides; this only shows.
    var scopeBox = form.querySelector("#scope-choice");
    var refreshScope = function () {};
    if (scopeBox) {
      var wlOption = scopeBox.querySelector("#scope-workload-option input");
      var wlBox = scopeBox.querySelector("#scope-workload");
      var wlSelect = scopeBox.querySelector("#workload");
      var wlHint = scopeBox.querySelector("#workload-hint");
      var selBox = scopeBox.querySelector("#scope-selector");
      var selInput = scopeBox.querySelector("#pod-selector");
      var preview = scopeBox.querySelector("#selector-preview");
      var wlSeq = 0, selSeq = 0, selTimer = null, wlKey = null;
      var scopeKind = function () {
        var c = scopeBox.querySelector("input[name=scope]:checked");
        return c ? c.value : "all";
      };
      var showDetail = function () {
        var k = scopeKind();
        wlBox.classList.toggle("hidden", k !== "workload");
        selBox.classList.toggle("hidden", k !== "selector");
      };
      var loadWorkloads = function () {
        var ns = chosenNamespaces();
        var one = ns.length === 1;
        wlOption.disabled = !one;
        if (!one) {
          wlHint.textContent = "Choose exactly one namespace to pick one of its Deployments, StatefulSets or DaemonSets.";
          if (wlOption.checked) { scopeBox.querySelector("input[name=scope][value=all]").checked = true; showDetail(); }
          wlKey = null;
          return;
        }
        var key = cluster.value + "/" + ns[0];
        if (key === wlKey) return;
        wlKey = key;
        var mine = ++wlSeq;
        var keep = wlSelect.value;
        wlHint.textContent = "Loading the workloads of " + ns[0] + "…";
        getJson("/api/v1/clusters/" + encodeURIComponent(cluster.value) + "/workloads?namespace=" + encodeURIComponent(ns[0]))
          .then(function (res) {
            if (mine !== wlSeq) return;
            wlSelect.textContent = "";
            add(wlSelect, "option", null, "Choose a workload").value = "";
            if (!res.ok) { wlKey = null; wlHint.textContent = res.j.error || "Cannot list the workloads."; return; }
            var items = res.j.workloads || [];
            items.forEach(function (w) {
              var o = add(wlSelect, "option", null, w.kind + " " + w.name + (w.replicas !== undefined && w.replicas !== null ? " (" + w.replicas + (w.replicas === 1 ? " replica" : " replicas") + ")" : ""));
              o.value = w.kind + "/" + w.name;
              if (w.selector) o.title = "pods with " + w.selector;
            });
            if (keep && Array.prototype.some.call(wlSelect.options, function (o) { return o.value === keep; })) wlSelect.value = keep;
            wlHint.textContent = items.length
              ? "The workload's own pod selector decides which pods are reachable, as it rolls out."
              : "No Deployments, StatefulSets or DaemonSets in " + ns[0] + ".";
          })
          .catch(function () { if (mine === wlSeq) { wlKey = null; wlHint.textContent = "Cannot reach the server."; } });
      };
      var renderPreview = function (results) {
        preview.textContent = "";
        results.forEach(function (r) {
          var p = add(preview, "p", "selector-ns");
          p.setAttribute("data-namespace", r.ns);
          if (!r.ok) { p.className = "selector-ns error"; p.textContent = r.j.error || ("HTTP " + r.status); return; }
          var pods = r.j.pods || [];
          var n = pods.length + (r.j.truncated ? "+" : "");
          add(p, "strong", "count", n + (pods.length === 1 && !r.j.truncated ? " pod" : " pods"));
          p.appendChild(document.createTextNode(" in " + r.ns + (pods.length ? ": " : " match.")));
          if (pods.length) {
            var names = add(p, "span", "pod-names", pods.map(function (x) { return x.name; }).join(", "));
            names.title = names.textContent;
          }
        });
      };
      var loadPreview = function () {
        var sel = selInput.value.trim();
        var ns = chosenNamespaces();
        var mine = ++selSeq;
        if (!sel) { preview.textContent = ""; add(preview, "span", "muted", "Type a selector such as app=checkout."); return; }
        if (!ns.length) { preview.textContent = ""; add(preview, "span", "muted", "Choose a namespace to see the pods this selector matches."); return; }
        // A preview of a few namespaces is enough to see whether the selector says what is meant.
        Promise.all(ns.slice(0, 5).map(function (n) {
          return getJson("/api/v1/clusters/" + encodeURIComponent(cluster.value) + "/pods?namespace=" + encodeURIComponent(n) + "&selector=" + encodeURIComponent(sel))
            .then(function (res) { res.ns = n; return res; });
        }))
          .then(function (results) { if (mine === selSeq) renderPreview(results); })
          .catch(function () { if (mine === selSeq) { preview.textContent = ""; add(preview, "p", "error", "Cannot reach the server."); } });
      };
      var previewSoon = function () { clearTimeout(selTimer); selTimer = setTimeout(loadPreview, 300); };
      scopeBox.addEventListener("change", function (e) {
        if (e.target && e.target.name === "scope") {
          showDetail();
          if (scopeKind() === "selector") previewSoon();
        }
      });
      selInput.addEventListener("input", previewSoon);
      refreshScope = function () {
        loadWorkloads();
        if (scopeKind() === "selector") previewSoon();
      };
      list.addEventListener("change", refreshScope);
      showDetail();
      refreshScope();
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
          refreshScope();
        })
        .catch(function () { list.textContent = "Cannot reach the server."; });
    });
  }
})();
