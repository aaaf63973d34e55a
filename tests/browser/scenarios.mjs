// The browser scenarios, in order; each builds on the state the previous ones left in `s`.
// Every step is checked in the page (text, roles, live updates), not only through the API.
import { check, shot, sleep, text, until, xtermLines } from "./lib.mjs";

export const HOSTILE = `<script>alert(1)</script> "quotes" 'single' ünïcødé`;
const DENIAL = `Change freeze: follow the <b>runbook</b> & retry "later"`;
const QUICK_LABEL = `<img src=x> "disk" 'usage' ü`;
const LONG_WORD = "x".repeat(700);

async function login(page, user, password) {
  await page.goto("/login");
  await page.getByLabel("Username").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL((u) => !u.pathname.startsWith("/login"));
}

/** Fills the request form like a person: cluster, namespaces through the filter box, duration, reason. */
async function requestAccess(page, { cluster, namespaces, duration, reason, screenshot, startAt, breakGlass, role, workload, selector, phase = "Pending" }) {
  await page.goto("/requests/new");
  const list = page.locator(".nslist");
  const clusterSelect = page.getByLabel("Cluster");
  if ((await clusterSelect.inputValue()) !== cluster) {
    // The namespace list is reloaded for the chosen cluster: mark the old boxes to wait for new ones.
    await list.evaluate((l) => l.querySelectorAll("input").forEach((i) => (i.dataset.old = "1")));
    await clusterSelect.selectOption(cluster);
    await page.locator(`.nslist input[value="${namespaces[0]}"]:not([data-old])`).waitFor();
  }
  const offered = await list.locator("input[type=checkbox]").evaluateAll((l) => l.map((i) => i.value));
  for (const excluded of ["kube-system", "kube-public", "argocd", "k8s-janus"]) {
    check(!offered.includes(excluded), `excluded namespace ${excluded} offered on ${cluster}: ${offered}`);
  }
  const filter = page.getByPlaceholder("Filter namespaces");
  for (const ns of namespaces) {
    const q = ns.slice(0, 4);
    await filter.fill(q);
    const visible = await list.locator("label:not(.hidden)").allTextContents();
    check(visible.length > 0 && visible.every((t) => t.includes(q)), `filter "${q}" shows ${JSON.stringify(visible)}`);
    check(visible.length < offered.length, `filter "${q}" hid nothing (${visible.length} of ${offered.length})`);
    await list.getByRole("checkbox", { name: ns, exact: true }).check();
  }
  await filter.fill("");
  check((await list.locator("label.hidden").count()) === 0, "clearing the filter shows every namespace again");
  for (const ns of namespaces) check(await list.getByRole("checkbox", { name: ns, exact: true }).isChecked(), `${ns} stays checked`);
  if (role) await page.locator("#role-choice").getByRole("radio", { name: role, exact: true }).check();
  if (workload) {
    await page.getByRole("radio", { name: "Pods of a workload" }).check();
    await until(`workload ${workload} offered`, async () => (await page.locator(`#workload option[value="${workload}"]`).count()) === 1);
    await page.getByLabel("Workload", { exact: true }).selectOption(workload);
  }
  if (selector) {
    await page.getByRole("radio", { name: "Pods matching labels" }).check();
    await page.getByLabel("Label selector").fill(selector);
  }
  await page.getByLabel("Duration").selectOption({ label: duration });
  await page.getByLabel("Reason").fill(reason);
  if (startAt) await page.locator("#start-at").fill(startAt);
  if (breakGlass) {
    await page.locator("#break-glass-box").waitFor({ state: "visible" });
    await page.getByLabel(/Break glass/).check();
  }
  if (screenshot) await shot(page, screenshot);
  await page.getByRole("button", { name: "Submit request" }).click();
  await page.waitForURL(/\/requests\/[^/?]+\?done=created$/);
  const name = new URL(page.url()).pathname.split("/").pop();
  check(/^[a-z0-9.-]+$/.test(name), `request name ${name}`);
  await until(`the ${phase} badge on the request page`, async () => (await text(page.locator("h1 .phase"))) === phase, 15000);
  check((await text(page.locator(".flash.ok"))).startsWith("Request submitted"), "the created flash message");
  return name;
}

const row = (page, name, table = "") => page.locator(`${table} tr[data-request="${name}"]`.trim());
const phaseOf = async (page, name, table = "") => text(row(page, name, table).locator(".phase"));

/** A definition term's value on a request page: `dt { "Reason" } dd { … }`. */
const dd = (page, term) => page.locator(`dl.kv dt:text-is("${term}") + dd`);

async function typeInTerminal(page, pane, line) {
  await page.locator(`#pane-${pane} .xterm-screen`).click();
  await page.keyboard.type(line);
  await page.keyboard.press("Enter");
}

async function waitForLine(page, rows, want, what) {
  return until(what, async () => (await xtermLines(page.locator(rows))).includes(want), 15000);
}

/** Runs `stty size` in a pane; checks the PTY's rows against the rows xterm.js shows. */
async function sttySize(page, pane) {
  const rows = `#pane-${pane} .xterm-rows`;
  const before = (await xtermLines(page.locator(rows))).filter((l) => /^\d+ \d+$/.test(l)).length;
  await typeInTerminal(page, pane, "stty size");
  const line = await until("stty size output", async () => {
    const found = (await xtermLines(page.locator(rows))).filter((l) => /^\d+ \d+$/.test(l));
    return found.length > before && found[found.length - 1];
  });
  const [r, c] = line.split(" ").map(Number);
  const shown = await page.locator(rows).evaluate((e) => e.children.length);
  check(r === shown, `stty rows ${r} match the ${shown} rows on screen`);
  return { rows: r, cols: c };
}

export const scenarios = [
  [
    "the guard sees CSP violations; the login page is clean",
    async (s) => {
      const page = (s.pages.eng = await s.ctx.engineer.newPage());
      await page.goto("/login");
      await page.getByRole("heading", { name: "Log in to k8s-janus" }).waitFor();
      s.guard.assertClean("loading the login page");
      // An inline script is what the CSP forbids: the guard must notice it, or its silence means nothing.
      await page.evaluate(() => {
        const el = document.createElement("script");
        el.textContent = "window.__inline = 1";
        document.body.appendChild(el);
      });
      await until("the CSP violation report", () => s.guard.problems.some((p) => p.includes("CSP violation")));
      check((await page.evaluate(() => window.__inline)) === undefined, "the inline script was blocked");
      s.guard.problems.length = 0;
      await shot(page, "login");
    },
  ],
  [
    "engineer logs in through the login form",
    async (s) => {
      const page = s.pages.eng;
      // A wrong password first: the form says so and keeps the username.
      await page.getByLabel("Username").fill("engineer");
      await page.getByLabel("Password").fill("not-the-password");
      await page.getByRole("button", { name: "Log in" }).click();
      await page.getByRole("alert").waitFor();
      check((await page.getByLabel("Username").inputValue()) === "engineer", "username kept after a failed login");
      s.guard.problems = s.guard.problems.filter((p) => !/status of 401/.test(p)); // the 401 response itself
      await login(page, "engineer", s.demo.engineer);
      check(new URL(page.url()).pathname === "/requests", `engineer lands on My requests, not ${page.url()}`);
      await page.getByRole("heading", { name: "My requests" }).waitFor();
      check((await text(page.locator("header .who"))).length > 0, "who am I shown");
      check((await page.getByRole("link", { name: "Audit log" }).count()) === 0, "no admin links for an engineer");
      // The demo's search-team policy names the engineer as an approver: the approvals page is theirs too.
      check((await page.getByRole("link", { name: "Approvals" }).count()) === 1, "the Approvals link for an approver named by a policy");
    },
  ],
  [
    "engineer requests two namespaces on the remote cluster and sees it Pending",
    async (s) => {
      const page = s.pages.eng;
      s.req1 = await requestAccess(page, {
        cluster: "remote",
        namespaces: ["payments", "checkout"],
        duration: "8m",
        reason: "Investigate failed payments (browser test)",
        screenshot: "request-form",
      });
      check((await text(dd(page, "Namespaces"))) === "checkout, payments" || (await text(dd(page, "Namespaces"))) === "payments, checkout", "both namespaces on the request");
      check((await text(dd(page, "Duration"))) === "8m", "requested duration shown");
      await page.getByRole("link", { name: "My requests" }).click();
      await until("the request Pending on My requests", async () => (await phaseOf(page, s.req1)) === "Pending");
      check((await text(row(page, s.req1).locator("td").nth(1))) === "Remote (demo)", "cluster display name");
    },
  ],
  [
    "admin approves from the pending queue with a TTL override; the engineer's page turns Active live",
    async (s) => {
      const eng = s.pages.eng;
      await eng.evaluate(() => (window.__sameDocument = true));
      const page = (s.pages.admin = await s.ctx.admin.newPage());
      await login(page, "admin", s.demo.admin);
      check(new URL(page.url()).pathname === "/admin", `admin lands on the dashboard, not ${page.url()}`);
      const r = row(page, s.req1, "#pending");
      await r.waitFor();
      check((await text(r.locator("td").first())).includes("engineer"), "requester shown in the queue");
      check((await text(r.locator("td.reason"))) === "Investigate failed payments (browser test)", "reason shown in the queue");
      await shot(page, "admin-dashboard");
      await r.getByLabel("Approve for").selectOption({ label: "5m" });
      await r.getByRole("button", { name: "Approve for", exact: true }).click();
      await page.waitForURL(/done=approve/);
      await until("the pending row gone", async () => (await row(page, s.req1, "#pending").count()) === 0);

      await until("Active on the engineer's My requests without a reload", async () => (await phaseOf(eng, s.req1)) === "Active", 20000);
      check(await eng.evaluate(() => window.__sameDocument === true), "My requests was updated in place (SSE), not reloaded");
      const countdown = row(eng, s.req1).locator(".countdown");
      const first = await text(countdown);
      const m = /^(?:(\d+)m )?(\d+)s$/.exec(first);
      check(m, `a countdown like "4m 59s", got "${first}"`);
      const secs = Number(m[1] || 0) * 60 + Number(m[2]);
      check(secs <= 300 && secs > 240, `the countdown follows the 5m override, not the 8m asked for: ${first}`);
      await until("the countdown ticking", async () => (await text(countdown)) !== first, 3000);
      check((await row(eng, s.req1).getByRole("link", { name: "Open terminal" }).count()) === 1, "Open terminal offered");
      await shot(eng, "my-requests");
    },
  ],
  [
    "request detail shows the approval and the timeline",
    async (s) => {
      const page = s.pages.eng;
      await page.getByRole("link", { name: s.req1 }).click();
      await page.waitForURL(new RegExp(`/requests/${s.req1}$`));
      check((await text(dd(page, "Duration"))) === "8m (approved for 5m)", `duration with the override: ${await text(dd(page, "Duration"))}`);
      check((await text(dd(page, "Approved by"))).startsWith("admin"), "approved by the admin");
      await until("timeline entries", async () => (await page.locator("ul.timeline li").count()) >= 2);
      const timeline = (await page.locator("ul.timeline li").allTextContents()).join("\n");
      check(/approv/i.test(timeline), `the approval is on the timeline:\n${timeline}`);
      await shot(page, "request-detail");
    },
  ],
  [
    "terminal: a shell in xterm.js echoes what is typed",
    async (s) => {
      const page = (s.pages.term = await s.ctx.engineer.newPage());
      await page.goto(`/terminal/${s.req1}`);
      const tabs = await page.locator("#ns-tabs button").allTextContents();
      check(tabs.length === 2 && tabs.includes("payments") && tabs.includes("checkout"), `a tab per namespace: ${tabs}`);
      await page.locator("#ns-tabs button", { hasText: "payments" }).click();
      const card = page.locator('#pod-list [data-pod="payments-api"]');
      await card.getByRole("button", { name: "Shell", exact: true }).click();
      await until("the shell connected", async () => (await text(page.locator("#pane-0 .status"))).includes("payments/payments-api (api)"));
      await until("a prompt", async () => (await xtermLines(page.locator("#pane-0 .xterm-rows"))).some((l) => l.length > 0));
      await typeInTerminal(page, 0, "echo hello");
      await waitForLine(page, "#pane-0 .xterm-rows", "hello", "hello in the terminal rows");
      s.size1 = await sttySize(page, 0);
    },
  ],
  [
    "terminal: split view with a second, independent shell in the sidecar pod",
    async (s) => {
      const page = s.pages.term;
      await page.getByRole("button", { name: "Split view" }).click();
      await page.locator("#pane-1").waitFor({ state: "visible" });
      await page.getByRole("button", { name: "Single view" }).waitFor();
      await page.locator("#ns-tabs button", { hasText: "checkout" }).click();
      const card = page.locator('#pod-list [data-pod="checkout-web"]');
      await card.getByLabel("Container").waitFor();
      const containers = await card.getByLabel("Container").locator("option").allTextContents();
      check(containers.includes("web") && containers.includes("envoy"), `container choice offered: ${containers}`);
      await card.getByLabel("Container").selectOption("web");
      await card.getByRole("button", { name: "Shell in pane 2" }).click();
      await until("the second shell connected", async () => (await text(page.locator("#pane-1 .status"))).includes("checkout/checkout-web (web)"));
      await until("a prompt in pane 2", async () => (await xtermLines(page.locator("#pane-1 .xterm-rows"))).some((l) => l.length > 0));
      await typeInTerminal(page, 1, "echo second-$((20+22))");
      await waitForLine(page, "#pane-1 .xterm-rows", "second-42", "the second shell's output");
      check((await xtermLines(page.locator("#pane-0 .xterm-rows"))).includes("hello"), "the first pane keeps its own session");
      check(!(await xtermLines(page.locator("#pane-0 .xterm-rows"))).includes("second-42"), "pane 1 output not in pane 0");
      // The split narrowed the first terminal; the shell's PTY follows the resize.
      const size2 = await sttySize(page, 0);
      check(size2.cols < s.size1.cols && size2.cols > 20, `stty size follows the split: ${s.size1.cols} -> ${size2.cols} columns`);
      await shot(page, "terminal-split");
      // A quick command (stored per user and cluster) runs in the pane in use; its label is text, not markup.
      const form = page.locator("#quick-form");
      await form.getByLabel("Label").fill(QUICK_LABEL);
      await form.getByLabel("Command").fill("echo quick-$((1+1))");
      await form.getByRole("button", { name: "Save" }).click();
      const quick = page.locator("#quick-list").getByRole("button", { name: QUICK_LABEL, exact: true });
      await quick.waitFor();
      check((await page.locator("#quick-list img").count()) === 0, "no element made from the quick command's label");
      await page.locator("#pane-1 .xterm-screen").click();
      await quick.click();
      await waitForLine(page, "#pane-1 .xterm-rows", "quick-2", "the quick command's output in pane 2");
    },
  ],
  [
    "terminal: follow the logs of the sidecar container",
    async (s) => {
      const page = s.pages.term;
      const card = () => page.locator('#pod-list [data-pod="checkout-web"]');
      await card().getByLabel("Container").selectOption("envoy");
      // The pod list refreshes itself every few seconds; the container chosen must survive that.
      await card().evaluate((c) => (c.dataset.seen = "1"));
      await until("the pod list refreshed", async () => (await page.locator('#pod-list [data-pod="checkout-web"][data-seen]').count()) === 0, 12000);
      check((await card().getByLabel("Container").inputValue()) === "envoy", "the chosen container survives the pod list refresh");
      await card().getByRole("button", { name: "Logs" }).click();
      const logs = page.locator("#pane-1 pre.logs");
      await until("envoy log lines", async () => (await logs.textContent()).includes('"GET /cart HTTP/1.1"'));
      check((await text(page.locator("#pane-1 .status"))).includes("checkout/checkout-web (envoy) · live"), "log pane status");
      const lines = async () => (await logs.textContent()).split("\n").filter(Boolean);
      const before = (await lines()).length;
      check((await lines()).every((l) => !l.includes("rendered /cart")), "only the sidecar's lines, not the web container's");
      await until("a new log line arriving", async () => (await lines()).length > before, 10000);
      await shot(page, "terminal-logs");
    },
  ],
  [
    "admin revokes: the open terminal closes with the reason, the request page turns Revoked live",
    async (s) => {
      const page = s.pages.admin;
      await page.goto("/admin");
      const r = row(page, s.req1, "#all");
      await r.getByLabel("Reason for revocation").fill("browser test done");
      const dialogs = s.guard.dialogs.length;
      await r.getByRole("button", { name: "Revoke" }).click();
      await page.waitForURL(/done=revoke/);
      const d = s.guard.dialogs.slice(dialogs);
      check(d.length === 1 && d[0].type === "confirm" && d[0].message.startsWith("Revoke this access now?"), `a confirmation was asked: ${JSON.stringify(d)}`);
      const term = s.pages.term;
      await until("the terminal told why it ended", async () => /session ended: .*revok/i.test(await text(term.locator("#term-notice"))), 5000);
      await until("Revoked on the engineer's request page (live)", async () => (await text(s.pages.eng.locator("h1 .phase"))) === "Revoked", 10000);
      check((await text(dd(s.pages.eng, "Revoked by"))).includes("browser test done"), "the revocation reason on the request page");
      // The terminal page says what ended the access and when, and offers only what still works.
      const ended = term.locator("#access-ended");
      await until("the terminal page says who revoked it and why", async () => /^Access was revoked by admin@example\.com at \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} CES?T: browser test done$/.test(await text(ended.locator(".ended"))), 10000);
      check((await term.locator("#pod-list button:visible").count()) === 0, "no Shell or Logs buttons once access ended");
      check(!(await term.locator(".term-side").isVisible()), "the pod list is gone");
      check(!/0s \(ended\)/.test(await text(term.locator("#terminal-app"))), "no 'Access ends in 0s (ended)'");
      check((await ended.getByRole("link", { name: "Request page" }).getAttribute("href")) === `/requests/${s.req1}`, "a link to the request page");
      await shot(term, "terminal-revoked");
      // "Request again" opens the form with the same cluster, namespaces and reason.
      await ended.getByRole("link", { name: "Request again" }).click();
      await term.waitForURL(/\/requests\/new\?/);
      check((await term.getByLabel("Cluster").inputValue()) === "remote", "the same cluster");
      const again = await term.locator(".nslist input:checked").evaluateAll((l) => l.map((i) => i.value).sort());
      check(JSON.stringify(again) === JSON.stringify(["checkout", "payments"]), `the same namespaces: ${again}`);
      check((await term.getByLabel("Reason").inputValue()) === "Investigate failed payments (browser test)", "the same reason");
      // Opened later, the terminal page of an ended request is the same ended page (no 409 error page).
      const r2 = await term.goto(`/terminal/${s.req1}`);
      check(r2.status() === 200, `the ended terminal page answers 200, not ${r2.status()}`);
      check(/^Access was revoked by admin@example\.com at .*: browser test done$/.test(await text(term.locator("#access-ended .ended"))), "the server-rendered ended page");
      check((await term.getByRole("button", { name: "Shell" }).count()) === 0, "no Shell button on the ended page");
      await term.close();
      // The terminal page's pod list may have asked once more and been told 409 (access ended).
      s.guard.problems = s.guard.problems.filter((p) => !/status of 409 .*\/(pods|events)\?/.test(p));
    },
  ],
  [
    "admin replays the recording of the shell",
    async (s) => {
      const page = s.pages.admin;
      const session = await until("the ended, recorded session", async () => {
        const r = await s.ctx.admin.request.get(`/api/v1/requests/${s.req1}/sessions`);
        check(r.ok(), `GET sessions: ${r.status()}`);
        const list = (await r.json()).sessions || [];
        return list.find((x) => x.pod === "payments-api" && (x.ended_at || x.endedAt));
      });
      await page.goto(`/recordings/${session.id}`);
      await until("the recording loaded", async () => /events/.test(await text(page.locator("#player-status"))));
      await page.getByRole("button", { name: "Show all at once" }).click();
      await waitForLine(page, "#player .xterm-rows", "hello", "hello in the replay");
      await shot(page, "recording");
      // Engineers cannot replay.
      const r = await s.ctx.engineer.request.get(`/api/v1/recordings/${session.id}`);
      check(r.status() === 403, `an engineer fetching a recording gets 403, not ${r.status()}`);
    },
  ],
  [
    "hostile reason shown escaped; denial with a reason reaches the engineer",
    async (s) => {
      const eng = s.pages.eng;
      s.req2 = await requestAccess(eng, { cluster: "central", namespaces: ["search"], duration: "2m", reason: HOSTILE });
      check((await text(dd(eng, "Reason"))) === HOSTILE, `reason shown as text on the request page: ${await text(dd(eng, "Reason"))}`);
      check((await dd(eng, "Reason").locator("script").count()) === 0, "no script element made from the reason");
      const api = await (await s.ctx.engineer.request.get(`/api/v1/requests/${s.req2}`)).json();
      check(api.reason === HOSTILE, `reason stored verbatim: ${JSON.stringify(api.reason)}`);

      const page = s.pages.admin;
      await page.goto("/admin");
      const r = row(page, s.req2, "#pending");
      await r.waitFor();
      check((await r.locator("td.reason").textContent()) === HOSTILE, "hostile reason shown verbatim as text in the queue");
      check((await r.locator("script").count()) === 0, "no script element in the queue row");
      await r.getByLabel("Reason for denial").fill(DENIAL);
      await r.getByRole("button", { name: "Deny" }).click();
      await page.waitForURL(/done=deny/);

      await until("Denied on the engineer's request page (live)", async () => (await text(eng.locator("h1 .phase"))) === "Denied", 10000);
      const denied = await text(dd(eng, "Denied by"));
      check(denied.endsWith(`: ${DENIAL}`), `the denial reason shown verbatim: ${denied}`);
      check((await dd(eng, "Denied by").locator("b").count()) === 0, "markup in the denial reason is not interpreted");
      check(!s.guard.dialogs.some((d) => d.type === "alert"), "no alert dialog opened");
      await shot(eng, "request-denied");
    },
  ],
  [
    "engineer withdraws a pending request",
    async (s) => {
      const page = s.pages.eng;
      // No namespace chosen: the form comes back with the error at the field and keeps what was typed.
      await page.goto("/requests/new");
      await page.getByLabel("Reason").fill("forgot the namespaces");
      await page.getByRole("button", { name: "Submit request" }).click();
      await page.locator(".nslist + p.error").waitFor();
      check((await text(page.locator(".nslist + p.error"))).includes("namespace"), "the namespaces error next to the list");
      check((await page.getByLabel("Reason").inputValue()) === "forgot the namespaces", "the reason kept");
      s.guard.problems = s.guard.problems.filter((p) => !/status of 422/.test(p));
      // A very long word in the reason wraps instead of widening the page.
      const reason = `withdraw me ${LONG_WORD}`;
      s.req3 = await requestAccess(page, { cluster: "central", namespaces: ["payments"], duration: "2m", reason });
      check((await dd(page, "Reason").textContent()) === reason, "the long reason shown whole");
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      check(overflow <= 0, `the request page is ${overflow}px wider than the window`);
      await page.goto("/requests");
      const overflow2 = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      check(overflow2 <= 0, `My requests is ${overflow2}px wider than the window`);
      const dialogs = s.guard.dialogs.length;
      await row(page, s.req3).getByRole("button", { name: "Withdraw" }).click();
      await page.waitForURL(/done=withdraw/);
      check(s.guard.dialogs.slice(dialogs).some((d) => d.type === "confirm" && d.message === "Withdraw this request?"), "withdraw asked for confirmation");
      await until("withdrawn on My requests", async () => !["Pending", "Approved", "Active"].includes(await phaseOf(page, s.req3)));
      await page.getByRole("link", { name: s.req3 }).click();
      await dd(page, "Withdrawn").waitFor();
      check((await page.getByRole("button", { name: "Withdraw" }).count()) === 0, "no withdraw button on a withdrawn request");
    },
  ],
  [
    "request form: policy hints, reason pattern, start time; a scheduled request shows its start",
    async (s) => {
      const page = s.pages.eng;
      await page.goto("/requests/new");
      await page.getByLabel("Cluster").selectOption("remote");
      await page.locator('.nslist input[value="search"]').waitFor();
      const hint = page.locator("#policy-hint");
      check(!(await hint.isVisible()), "no policy hint before a namespace is chosen");
      check(!(await page.locator("#break-glass-box").isVisible()), "no break-glass box before the policy says so");
      await page.locator(".nslist").getByRole("checkbox", { name: "search", exact: true }).check();
      await until("the search-team policy hint", async () => (await text(hint.locator(".policy-name"))) === "search-team");
      const h = await text(hint);
      check(h.includes("The search team's namespace on the remote cluster"), `the policy's description: ${h}`);
      check(h.includes("2 approvals needed from: engineer@example.com, search-lead@example.com, admin@example.com"), `who approves and how many: ${h}`);
      check(h.includes("The reason must contain a ticket id such as OPS-1234."), `the reason pattern's description: ${h}`);
      await page.locator("#break-glass-box").waitFor({ state: "visible" });
      check((await text(page.locator("#break-glass-box"))).includes("Access starts immediately"), "the break-glass warning");
      // The reason pattern is checked as you type (a hint; the server decides).
      await page.getByLabel("Reason").fill("reindex, no ticket");
      await until("the reason hint warns", async () => (await page.locator("#reason-hint.warn").count()) === 1);
      await page.getByLabel("Reason").fill("OPS-42 reindex");
      await until("the reason hint is satisfied", async () => (await page.locator("#reason-hint.ok").count()) === 1);
      // Without a ticket id the server refuses, with the pattern's description.
      await page.getByLabel("Reason").fill("reindex, no ticket");
      await page.getByRole("button", { name: "Submit request" }).click();
      await page.locator("p.error").first().waitFor();
      const err = (await page.locator("p.error").allTextContents()).join(" ");
      check(/ticket id such as OPS-1234/.test(err), `the server's reason error: ${err}`);
      check((await text(page.locator("#policy-hint .policy-name"))) === "search-team", "the hint rendered by the server with the error");
      s.guard.problems = s.guard.problems.filter((p) => !/status of 422/.test(p));
      // Another namespace: the default policy, no break-glass.
      await page.locator(".nslist").getByRole("checkbox", { name: "search", exact: true }).uncheck();
      await page.locator(".nslist").getByRole("checkbox", { name: "payments", exact: true }).check();
      await until("the default policy hint", async () => (await text(hint.locator(".policy-name"))) === "default");
      await until("no break-glass under the default policy", async () => !(await page.locator("#break-glass-box").isVisible()));
      check((await text(page.locator("label[for=start-at]"))) === "Start at (Europe/Berlin, optional)", `the start field names the zone: ${await text(page.locator("label[for=start-at]"))}`);
      await shot(page, "request-form-policy");
      // A request that starts later: the request page shows the start in the display zone.
      const day = new Date(Date.now() + 2 * 86400000).toISOString().slice(0, 10);
      s.req4 = await requestAccess(page, { cluster: "central", namespaces: ["payments"], duration: "2m", reason: "scheduled maintenance", startAt: `${day}T10:00` });
      const starts = await text(dd(page, "Starts"));
      check(new RegExp(`^${day} 10:00:00 CES?T`).test(starts), `the start time in Europe/Berlin: ${starts}`);
      const policy = await text(page.locator("#policy"));
      check(policy.includes("default") && policy.includes("0 of 1 approval"), `the request page explains the policy: ${policy}`);
      check(policy.includes("You cannot approve:"), `why the requester cannot approve: ${policy}`);
    },
  ],
  [
    "approvals page: only what I may decide, with quorum progress; an approval with a comment",
    async (s) => {
      const admin = s.pages.admin;
      s.req5 = await requestAccess(admin, { cluster: "remote", namespaces: ["search"], duration: "2m", reason: "OPS-7 reindex search" });
      check((await text(admin.locator("#policy .quorum"))) === "0 of 2 approvals", "0 of 2 on the request page");
      check((await text(admin.locator("#policy"))).includes("You cannot approve:"), "the requester is told why they cannot approve");

      const eng = s.pages.eng;
      await eng.getByRole("link", { name: "Approvals" }).click();
      await eng.waitForURL(/\/admin$/);
      const r = row(eng, s.req5, "#pending");
      await r.waitFor();
      check((await text(r.locator(".quorum"))) === "0 of 2 approvals", `quorum progress in the list: ${await text(r.locator(".quorum"))}`);
      const listed = await eng.locator("#pending tr[data-request]").evaluateAll((l) => l.map((e) => e.dataset.request));
      check(!listed.includes(s.req4), `the engineer's own request (default policy, admins approve) is not in their list: ${listed}`);
      check(listed.every((n) => n === s.req5), `only what the engineer may decide: ${listed}`);
      await shot(eng, "approvals-approver");
      await r.getByLabel("Approval comment").fill(`checked OPS-7 <b>ok</b>`);
      await r.getByRole("button", { name: /^Approve \(/ }).click();
      await eng.waitForURL(/done=approve/);
      await until("the approved request gone from the engineer's list", async () => (await row(eng, s.req5, "#pending").count()) === 0);

      await admin.reload();
      await until("1 of 2 on the request page", async () => (await text(admin.locator("#policy .quorum"))) === "1 of 2 approvals", 10000);
      check((await text(admin.locator("h1 .phase"))) === "Pending", "still Pending after one of two approvals");
      const approvals = await text(admin.locator("ul.approvals"));
      check(approvals.includes("engineer@example.com approved at") && approvals.includes("checked OPS-7 <b>ok</b>"), `the approval and its comment as text: ${approvals}`);
      check((await admin.locator("ul.approvals b").count()) === 0, "no markup from the comment");
      // The admin is the requester here: it is not on the admin's list either.
      await admin.goto("/admin");
      check((await row(admin, s.req5, "#pending").count()) === 0, "the requester's own request is not on their approvals list");
      check((await row(admin, s.req4, "#pending").count()) === 1, "the engineer's default-policy request is on the admin's list");
    },
  ],
  [
    "break-glass: active at once, awaiting review for an approver, acknowledged, gone from the list",
    async (s) => {
      const eng = s.pages.eng;
      s.req6 = await requestAccess(eng, { cluster: "remote", namespaces: ["search"], duration: "2m", reason: "OPS-9 search is down", breakGlass: true, phase: "Active" });
      const badges = await eng.locator("h1 .badge").allTextContents();
      check(badges.includes("break-glass") && badges.includes("awaiting review"), `break-glass badges: ${badges}`);
      check((await text(dd(eng, "Break glass"))).startsWith("activated by the requester at "), "when break-glass was used");
      check((await eng.getByRole("button", { name: "Acknowledge" }).count()) === 0, "the requester cannot acknowledge their own break-glass");

      const admin = s.pages.admin;
      await admin.goto("/admin");
      const r = row(admin, s.req6, "#awaiting-review");
      await r.waitFor();
      check((await text(r.locator(".phase"))) === "Active", "Active in the review list");
      check((await row(admin, s.req6, "#pending").count()) === 0, "not among the requests to approve");
      await shot(admin, "approvals-break-glass");
      await r.getByLabel("Review comment").fill("outage confirmed");
      await r.getByRole("button", { name: "Acknowledge" }).click();
      await admin.waitForURL(/done=acknowledge/);
      await until("gone from the review list", async () => (await row(admin, s.req6, "#awaiting-review").count()) === 0);

      await until("reviewed on the engineer's page (live)", async () => (await dd(eng, "Reviewed by").count()) === 1, 10000);
      check((await text(dd(eng, "Reviewed by"))).startsWith("admin@example.com at ") && (await text(dd(eng, "Reviewed by"))).endsWith(": outage confirmed"), `who reviewed: ${await text(dd(eng, "Reviewed by"))}`);
      await until("no awaiting-review badge", async () => !(await eng.locator("h1 .badge").allTextContents()).includes("awaiting review"));
    },
  ],
  [
    "audit log and clusters pages",
    async (s) => {
      const page = s.pages.admin;
      await page.goto("/audit");
      await page.getByRole("heading", { name: "Audit log" }).waitFor();
      const audit = await page.locator("#audit tbody").textContent();
      for (const name of [s.req1, s.req2, s.req3]) check(audit.includes(name), `${name} in the audit log`);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      check(overflow <= 0, `the audit log is ${overflow}px wider than the window (long reason)`);
      await shot(page, "audit-log");
      const eng = s.pages.eng;
      await eng.goto("/clusters");
      const rows = eng.locator("#clusters tbody tr");
      check((await rows.count()) === 2, "two clusters listed");
      for (let i = 0; i < 2; i++) {
        const t = await text(rows.nth(i));
        check(t.includes("connected") && !t.includes("unreachable"), `cluster connected: ${t}`);
        check(!t.includes("missing"), `janus-pod-exec not missing: ${t}`);
        if (t.includes("remote")) check(t.includes("present"), `janus-pod-exec present on the remote cluster: ${t}`);
        // The web ServiceAccount of the chart may not read ClusterRoles on the central cluster ("unknown").
        else if (!t.includes("present")) s.log(`note: central cluster shows janus-pod-exec as "${t.includes("unknown") ? "unknown" : t}"`);
      }
      await shot(eng, "clusters");
      // Engineers are kept out of the admin pages; as an approver the engineer sees only their own decisions.
      const r = await eng.goto("/audit");
      check(r.status() === 403, `an engineer on /audit gets 403, not ${r.status()}`);
      const a = await eng.goto("/admin");
      check(a.status() === 200, `an approver on /admin gets the approvals page, not ${a.status()}`);
      check((await eng.locator("table#all").count()) === 0, "no list of all requests for a non-admin approver");
      s.guard.problems = s.guard.problems.filter((p) => !/status of 403/.test(p));
      await sleep(100);
    },
  ],
  [
    "admin sees a dead letter and retries it",
    async (s) => {
      // run.mjs points the demo's webhook sink (request.created) at a receiver answering 400: every
      // request created above is a dead letter, which is not retried by itself.
      const page = s.pages.admin;
      await page.goto("/admin");
      await page.getByRole("link", { name: "Notifications" }).click();
      await page.getByRole("heading", { name: "Notifications" }).waitFor();
      const rows = page.locator("#dead-letters tbody tr");
      await until("dead letters on the page", async () => {
        if ((await rows.count()) > 0) return true;
        await page.reload();
        return false;
      }, 30000);
      const first = rows.first();
      const id = await first.getAttribute("data-dead-letter");
      const t = await text(first);
      check(t.includes("browser-hook") && t.includes("request.created") && t.includes("400"), `the dead letter shows sink, event and answer: ${t}`);
      const dead = Number(await text(page.locator('#sink-counts tr[data-sink="browser-hook"] td.dead')));
      check(dead === (await rows.count()), `the sink's dead count ${dead} matches the rows listed`);
      const attempts = Number(await text(first.locator("td").nth(2)));
      check(attempts >= 1, `attempts ${attempts}`);
      await shot(page, "notifications-dead-letters");
      const hits = s.receiver.hits;
      await first.getByRole("button", { name: "Retry" }).click();
      await page.waitForURL(/done=retried/);
      check((await text(page.locator(".flash.ok"))).includes("pending again"), "the retried flash message");
      // The delivery goes out again; the receiver refuses it again, so it is back with one more attempt.
      await until("the retried delivery reached the receiver", () => s.receiver.hits > hits, 30000);
      await until("dead again with one more attempt", async () => {
        await page.goto("/admin/notifications");
        const r = page.locator(`#dead-letters tr[data-dead-letter="${id}"]`);
        return (await r.count()) === 1 && Number(await text(r.locator("td").nth(2))) === attempts + 1;
      }, 30000);
      // Engineers neither see the page nor its navigation entry.
      const eng = s.pages.eng;
      await eng.goto("/requests");
      check((await eng.getByRole("link", { name: "Notifications" }).count()) === 0, "no Notifications link for an engineer");
      const r = await eng.goto("/admin/notifications");
      check(r.status() === 403, `an engineer on /admin/notifications gets 403, not ${r.status()}`);
      s.guard.problems = s.guard.problems.filter((p) => !/status of 403/.test(p));
      await sleep(100);
    },
  ],
  [
    "request form: roles with descriptions, workloads of the one namespace, a live selector preview",
    async (s) => {
      const page = s.pages.eng;
      await page.goto("/requests/new");
      const roles = page.locator("#role-choice");
      for (const [title, desc] of [["Shell", "A shell (kubectl exec)"], ["Logs (read-only)", "No shell."], ["Debug container", "ephemeral debug container"]]) {
        const radio = roles.getByRole("radio", { name: title, exact: true });
        await radio.waitFor();
        // The description is the radio's accessible description (aria-describedby), not only nearby text.
        const described = await radio.evaluate((r) => document.getElementById(r.getAttribute("aria-describedby")).textContent);
        check(described.includes(desc), `role ${title} described: ${described}`);
      }
      check(await roles.getByRole("radio", { name: "Shell", exact: true }).isChecked(), "the shell is the default role");
      check(await page.getByRole("radio", { name: "All pods of the namespaces" }).isChecked(), "all pods by default");
      // Keyboard: the roles are one radio group reached with Tab and moved through with the arrow keys.
      await roles.getByRole("radio", { name: "Shell", exact: true }).focus();
      await page.keyboard.press("ArrowDown");
      check(await roles.getByRole("radio", { name: "Logs (read-only)", exact: true }).isChecked(), "arrow keys move through the roles");
      await roles.getByRole("radio", { name: "Shell", exact: true }).check();

      await page.getByLabel("Cluster").selectOption("remote");
      await page.locator('.nslist input[value="payments"]').waitFor();
      const list = page.locator(".nslist");
      const byWorkload = page.getByRole("radio", { name: "Pods of a workload" });
      await list.getByRole("checkbox", { name: "payments", exact: true }).check();
      await list.getByRole("checkbox", { name: "checkout", exact: true }).check();
      await until("no workload scope with two namespaces", () => byWorkload.isDisabled());
      await list.getByRole("checkbox", { name: "checkout", exact: true }).uncheck();
      await until("the workload scope with one namespace", async () => !(await byWorkload.isDisabled()));
      await byWorkload.check();
      await until("the Deployment of payments listed", async () => (await page.locator('#workload option[value="Deployment/payments-api"]').count()) === 1);
      check((await text(page.locator('#workload option[value="Deployment/payments-api"]'))) === "Deployment payments-api (2 replicas)", "kind, name and replicas");
      check(!(await page.locator("#scope-selector").isVisible()), "only the chosen kind's detail shows");

      await page.getByRole("radio", { name: "Pods matching labels" }).check();
      check(!(await page.locator("#scope-workload").isVisible()), "the workload picker hides for a selector");
      const preview = page.locator("#selector-preview");
      await page.getByLabel("Label selector").fill("tier=api");
      await until("the preview of tier=api", async () => (await text(preview)) === "2 pods in payments: payments-api, payments-api-7f9c4", 10000);
      await page.getByLabel("Label selector").fill("tier in (api");
      await until("the bad selector's error", async () => /without its '\)'/.test(await text(preview.locator(".error"))), 10000);
      s.guard.problems = s.guard.problems.filter((p) => !/status of 422/.test(p));
      await page.getByLabel("Label selector").fill("tier notin (api,cache)");
      await until("the preview of tier notin (api,cache)", async () => (await text(preview)) === "1 pod in payments: payments-worker", 10000);
      await shot(page, "request-form-scope");
    },
  ],
  [
    "a workload-scoped shell: the approver sees the scope, the terminal lists only the workload's pods",
    async (s) => {
      const eng = s.pages.eng;
      s.req7 = await requestAccess(eng, { cluster: "remote", namespaces: ["payments"], duration: "2m", reason: "rollout check (scoped)", workload: "Deployment/payments-api" });
      check((await text(dd(eng, "Access"))) === "Shell · pods of deployment payments-api", `role and scope on the request page: ${await text(dd(eng, "Access"))}`);
      await eng.goto("/requests");
      check((await text(row(eng, s.req7).locator(".access-line"))) === "Shell · pods of deployment payments-api", "the scope in My requests");

      const admin = s.pages.admin;
      await admin.goto("/admin");
      const r = row(admin, s.req7, "#pending");
      await r.waitFor();
      check((await text(r.locator(".access-line"))) === "Shell · pods of deployment payments-api", "the approver sees the scope");
      await shot(admin, "approvals-scoped");
      await r.getByRole("button", { name: /^Approve \(/ }).click();
      await admin.waitForURL(/done=approve/);

      await until("Active on My requests", async () => (await phaseOf(eng, s.req7)) === "Active", 20000);
      const page = (s.pages.term = await s.ctx.engineer.newPage());
      await page.goto(`/terminal/${s.req7}`);
      check((await text(page.locator("#term-access"))) === "Shell · pods of deployment payments-api", "role and scope on the terminal");
      const note = await text(page.locator("#scope-note"));
      check(note.includes("Only pods of deployment payments-api are in this request's scope"), `the scope above the pod list: ${note}`);
      const names = async () => (await page.locator("#pod-list [data-pod]").evaluateAll((l) => l.map((e) => e.dataset.pod))).sort().join(",");
      await until("only the workload's pods listed", async () => (await names()) === "payments-api,payments-api-7f9c4", 15000);
      await until("the workload's selector shown", async () => (await text(page.locator("#scope-note"))).includes("payments: app=payments-api"), 10000);
      await page.locator('#pod-list [data-pod="payments-api-7f9c4"]').getByRole("button", { name: "Shell", exact: true }).click();
      await until("the shell connected", async () => (await text(page.locator("#pane-0 .status"))).includes("payments/payments-api-7f9c4 (api)"));
      await typeInTerminal(page, 0, "echo scoped-$((40+2))");
      await waitForLine(page, "#pane-0 .xterm-rows", "scoped-42", "the scoped shell's output");
      await shot(page, "terminal-scoped");
      await page.close();
      // Done with it: revoked, so the engineer stays under the demo's five open requests.
      await admin.goto("/admin");
      const all = row(admin, s.req7, "#all");
      await all.getByLabel("Reason for revocation").fill("scoped check done");
      await all.getByRole("button", { name: "Revoke" }).click();
      await admin.waitForURL(/done=revoke/);
      await until("Revoked", async () => (await phaseOf(admin, s.req7, "#all")) === "Revoked", 10000);
    },
  ],
  [
    "a logs request: approved by its policy, the terminal shows logs and events and no shell",
    async (s) => {
      const eng = s.pages.eng;
      s.req8 = await requestAccess(eng, { cluster: "remote", namespaces: ["checkout"], duration: "2m", reason: "read the envoy logs", role: "Logs (read-only)", phase: "Active" });
      check((await text(dd(eng, "Access"))) === "Logs (read-only) · all pods", `the logs role on the request page: ${await text(dd(eng, "Access"))}`);
      check((await eng.locator("h1 .badge").allTextContents()).includes("auto-approved"), "auto-approved by the logs-auto policy");
      const page = (s.pages.term = await s.ctx.engineer.newPage());
      await page.goto(`/terminal/${s.req8}`);
      const card = page.locator('#pod-list [data-pod="checkout-web"]');
      await card.waitFor();
      check((await page.locator("#pod-list").getByRole("button", { name: /Shell/ }).count()) === 0, "no shell button for a logs role");
      check((await page.locator("#quick-form").count()) === 0, "no quick commands without a shell");
      check((await text(page.locator("#pane-0 .status"))).includes("This role has no shell."), "the pane says there is no shell");
      await card.getByLabel("Container").selectOption("envoy");
      await card.getByRole("button", { name: "Logs" }).click();
      const logs = page.locator("#pane-0 pre.logs");
      await until("envoy log lines", async () => (await logs.textContent()).includes('"GET /cart HTTP/1.1"'));
      check((await text(page.locator("#pane-0 .status"))).includes("checkout/checkout-web (envoy) · live"), "log pane status");
      check(await page.locator("#pane-0").getByLabel("Follow").isChecked(), "following the newest lines");
      await until("events listed", async () => (await text(page.locator("#event-list"))).length > 0);
      await shot(page, "terminal-logs-role");
      await page.close();
    },
  ],
  [
    "a debug request: an image off the list is refused, an allowed one starts and runs a command",
    async (s) => {
      const eng = s.pages.eng;
      s.req9 = await requestAccess(eng, { cluster: "central", namespaces: ["payments"], duration: "2m", reason: "debug the api (browser test)", role: "Debug container" });
      check((await text(dd(eng, "Access"))) === "Debug container · all pods", `the debug role on the request page: ${await text(dd(eng, "Access"))}`);
      const admin = s.pages.admin;
      await admin.goto("/admin");
      const r = row(admin, s.req9, "#pending");
      await r.waitFor();
      check((await text(r.locator(".access-line"))) === "Debug container · all pods", "the approver sees the debug role");
      await r.getByRole("button", { name: /^Approve \(/ }).click();
      await admin.waitForURL(/done=approve/);
      await until("Active on the request page", async () => (await text(eng.locator("h1 .phase"))) === "Active", 20000);

      const page = (s.pages.term = await s.ctx.engineer.newPage());
      await page.goto(`/terminal/${s.req9}`);
      await page.locator('#pod-list [data-pod="payments-api"]').waitFor();
      check((await page.locator("#pod-list").getByRole("button", { name: /Shell/ }).count()) === 0, "no plain shell for a debug role");
      const form = page.locator("#debug-form");
      await page.locator('#pod-list [data-pod="payments-api"]').getByRole("button", { name: "Debug" }).click();
      check((await form.getByLabel("Pod", { exact: true }).inputValue()) === "payments-api", "the pod chosen from the list");
      check((await form.getByLabel("Next to container").inputValue()) === "api", "its container");
      check((await text(form.locator("#debug-images-hint"))) === "Allowed: busybox:1.36, nicolaka/netshoot:*", "the allowed images");
      // An image the role does not list is refused by the server, and said so.
      await form.getByLabel("Image").fill("alpine:3.20");
      await form.getByRole("button", { name: "Start debug container" }).click();
      await until("the refusal naming the image", async () => /alpine:3\.20/.test(await text(form.locator("#debug-status.error"))), 10000);
      check((await page.locator("#pane-0 .xterm-rows").count()) === 0, "nothing attached after a refusal");
      s.guard.problems = s.guard.problems.filter((p) => !/status of 422/.test(p));
      await form.getByLabel("Image").fill("busybox:1.36");
      await form.getByRole("button", { name: "Start debug container" }).click();
      try {
        await until("attached to the debug container", async () => /payments\/payments-api \(janus-debug-[a-z0-9-]+\)/.test(await text(page.locator("#pane-0 .status"))), 40000);
      } catch (e) {
        throw new Error(`${e.message}; the pane says "${await text(page.locator("#pane-0 .status"))}", the form "${await text(form.locator("#debug-status"))}"`);
      }
      // An attached shell prints its prompt only after input (kubectl attach says as much): type at once.
      await typeInTerminal(page, 0, "echo debug-$((6*7))");
      await waitForLine(page, "#pane-0 .xterm-rows", "debug-42", "the debug container's output");
      check(/janus-debug-/.test(await text(form.locator("#debug-status"))), "the form names the container started");
      await shot(page, "terminal-debug");
      await page.close();
    },
  ],
  [
    "a selector-scoped logs request: the terminal lists only the pods the selector matches",
    async (s) => {
      const eng = s.pages.eng;
      s.req10 = await requestAccess(eng, { cluster: "remote", namespaces: ["payments"], duration: "2m", reason: "batch and cache logs", role: "Logs (read-only)", selector: "tier in (cache, batch)", phase: "Active" });
      check((await text(dd(eng, "Access"))) === "Logs (read-only) · pods with tier in (batch,cache)", `the selector, normalised, on the request page: ${await text(dd(eng, "Access"))}`);
      const page = (s.pages.term = await s.ctx.engineer.newPage());
      await page.goto(`/terminal/${s.req10}`);
      check((await text(page.locator("#scope-note"))).includes("Only pods with tier in (batch,cache) are in this request's scope"), "the scope above the pod list");
      const names = async () => (await page.locator("#pod-list [data-pod]").evaluateAll((l) => l.map((e) => e.dataset.pod))).sort().join(",");
      await until("only the matching pods listed", async () => (await names()) === "payments-redis,payments-worker", 15000);
      await page.close();
    },
  ],
  [
    "API tokens: the engineer creates one, sees it once with a working copy button, and revokes it; the admin sees it in All tokens",
    async (s) => {
      const page = (s.pages.tokens = await s.ctx.engineer.newPage());
      await page.goto("/requests");
      await page.getByRole("link", { name: "API tokens" }).click();
      await page.getByRole("heading", { name: "API tokens", exact: true }).waitFor();
      const form = page.locator("#create-token");
      await form.getByLabel("Name").fill("browser-ci");
      check(await form.getByLabel("read").isChecked(), "read is preselected");
      await form.getByLabel("request").check();
      check((await form.getByLabel(/^Expires in/).inputValue()) === "30", "the default expiry is preselected");
      await form.getByRole("button", { name: "Create token" }).click();

      // Shown once, with the warning and a copy button that really copies.
      const field = page.locator("#new-token");
      await field.waitFor();
      const token = await field.inputValue();
      check(/^janus_pat_[A-Za-z0-9]{40}$/.test(token), `a well-formed token in the copy area: ${token.slice(0, 18)}…`);
      check((await text(page.locator("#new-token-box"))).includes("shown only this once"), "the warning next to it");
      await s.ctx.engineer.grantPermissions(["clipboard-read", "clipboard-write"], { origin: s.demo.url });
      const copy = page.locator("#new-token-box").getByRole("button", { name: "Copy" });
      await copy.click();
      await until("the button says Copied", async () => (await text(page.locator("#new-token-box button"))) === "Copied");
      check((await page.evaluate(() => navigator.clipboard.readText())) === token, "the clipboard holds the token");
      await shot(page, "api-token-created");

      // Listed by display id, never shown again.
      const displayId = token.slice(0, 18);
      const r = page.locator(`#my-tokens tr[data-token="${displayId}"]`);
      check((await text(r.locator("td.state"))) === "Active", "the new token is Active");
      check((await text(r.locator("td").nth(2))) === "read, request", "with its scopes");
      await page.goto("/tokens");
      check((await page.locator("#new-token").count()) === 0, "no copy area after reloading");
      check(!(await page.content()).includes(token.slice(10)), "the token is not on the page again");

      // Revoke (the confirm dialog is accepted and recorded by the guard).
      const dialogs = s.guard.dialogs.length;
      await page.locator(`#my-tokens tr[data-token="${displayId}"]`).getByRole("button", { name: "Revoke" }).click();
      await page.waitForURL(/done=revoked/);
      check(s.guard.dialogs.slice(dialogs).some((d) => d.type === "confirm" && d.message.includes("browser-ci")), "asked before revoking");
      await until("the row says Revoked", async () => (await text(page.locator(`#my-tokens tr[data-token="${displayId}"] td.state`))).startsWith("Revoked"));
      check((await page.locator(`#my-tokens tr[data-token="${displayId}"]`).getByRole("button", { name: "Revoke" }).count()) === 0, "no Revoke button on a revoked token");

      // The admin sees everyone's tokens, this one with its owner.
      const admin = s.pages.admin;
      await admin.goto("/tokens");
      const a = admin.locator(`#all-tokens tr[data-token="${displayId}"]`);
      await a.waitFor();
      check((await text(a.locator("td").first())).startsWith("engineer"), `the owner in All tokens: ${await text(a.locator("td").first())}`);
      check((await text(a.locator("td.state"))).startsWith("Revoked"), "revoked for the admin too");
      await shot(admin, "api-tokens-admin");
      await page.close();
      delete s.pages.tokens;
    },
  ],
];
