#!/usr/bin/env node
// Browser end-to-end tests of the web UI and the terminal against `janus demo` (kubesim clusters, the
// controller, SQLite), driven through Debian's chromium with playwright-core.
//
//   node tests/browser/run.mjs target/debug/janus
//
// Builds nothing: it runs the given binary. Screenshots go to target/browser-artifacts/ (or
// $JANUS_BROWSER_ARTIFACTS). Every page is watched for CSP violations, console errors, uncaught
// exceptions and unexpected dialogs; any of them fails the step in which it happened.
// Exit codes: 0 all passed, 1 a step failed, 2 usage, 3 chromium or playwright-core missing (a skip
// outside CI; scripts/test.sh turns it into a failure under CI=true).
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

import { ARTIFACTS, Guard, VIEWPORT, chromiumPath, ensureArtifacts, launch, loadPlaywright, startDemo, stopDemo } from "./lib.mjs";
import { scenarios } from "./scenarios.mjs";

const binary = process.argv[2];
if (!binary || !existsSync(binary)) {
  console.error("usage: node tests/browser/run.mjs PATH/TO/janus   (build it first: cargo build -p janus)");
  process.exit(2);
}
if (!chromiumPath()) {
  console.error("browser tests: chromium not found (apt-get install -y chromium, or set CHROMIUM)");
  process.exit(3);
}
let pw;
try {
  pw = await loadPlaywright();
} catch (e) {
  console.error(`browser tests: playwright-core not found (scripts/install-test-tools.sh installs it): ${e.message}`);
  process.exit(3);
}

ensureArtifacts();
const started = Date.now();
const log = (m) => console.log(`[browser ${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${m}`);

// A webhook receiver that refuses every delivery with 400 (a permanent answer): the demo's
// request.created notifications to it become dead letters for the Notifications page scenario.
const receiver = { hits: 0 };
const hook = createServer((req, res) => {
  req.resume();
  req.on("end", () => {
    receiver.hits++;
    res.writeHead(400, { "content-type": "application/json" });
    res.end('{"error":"invalid_payload"}');
  });
});
await new Promise((r) => hook.listen(0, "127.0.0.1", r));
hook.unref();
const notifications = join(mkdtempSync(join(tmpdir(), "janus-browser-hook-")), "notifications.yaml");
writeFileSync(
  notifications,
  "notifications:\n  webhook:\n    - {name: browser-hook, urlEnv: JANUS_BROWSER_HOOK_URL, hmacKeyEnv: JANUS_BROWSER_HOOK_KEY, events: [request.created]}\n",
);
log(`starting ${binary} demo`);
const demo = await startDemo(resolve(binary), {
  args: ["--notifications", notifications],
  env: {
    JANUS_BROWSER_HOOK_URL: `http://127.0.0.1:${hook.address().port}/hook`,
    JANUS_BROWSER_HOOK_KEY: "browser-test-hmac-key-0123456789abcdef",
  },
});
// A last resort against a hang anywhere: the whole run normally takes well under a minute.
setTimeout(() => {
  console.error("browser tests: still running after 5 minutes; giving up");
  demo.child.kill("SIGKILL");
  process.exit(1);
}, 300000).unref();
log(`demo running at ${demo.url}`);
let browser = null;
let passed = 0;
let failed = 0;
const guard = new Guard();
try {
  browser = await launch(pw);
  const ctx = {};
  for (const who of ["engineer", "admin"]) {
    const context = await browser.newContext({ viewport: VIEWPORT, baseURL: demo.url });
    context.setDefaultTimeout(15000);
    await guard.watch(context, who);
    ctx[who] = context;
  }
  const s = { demo, guard, ctx, log, pages: {}, receiver };
  for (const [name, fn] of scenarios) {
    const t0 = Date.now();
    try {
      await fn(s);
      guard.assertClean(name);
      passed++;
      log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    } catch (e) {
      failed++;
      log(`FAIL ${name}: ${e.stack || e}`);
      for (const [key, page] of Object.entries(s.pages)) {
        if (!page.isClosed()) await page.screenshot({ path: `${ARTIFACTS}/failure-${key}.png` }).catch(() => {});
      }
      break; // the steps build on each other
    }
  }
  const skipped = scenarios.length - passed - failed;
  if (skipped) log(`${skipped} later step(s) not run`);
} finally {
  if (browser) await browser.close().catch(() => {});
  await stopDemo(demo);
}
log(`screenshots in ${ARTIFACTS}`);
if (failed) {
  const lines = readFileSync(`${ARTIFACTS}/demo.log`, "utf8").split("\n").filter(Boolean);
  console.log(`--- last lines of ${ARTIFACTS}/demo.log ---\n${lines.slice(-40).join("\n")}`);
}
const notRun = scenarios.length - passed - failed;
console.log(`${passed} passed, ${failed + notRun} failed`);
process.exit(failed + notRun ? 1 : 0);
