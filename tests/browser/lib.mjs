// Helpers of the browser tests: `janus demo` as a subprocess, Debian's chromium through playwright-core,
// a guard that fails the run on any CSP violation, JS error or unexpected dialog, and small waiting helpers.
import { spawn } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const ARTIFACTS = resolve(process.env.JANUS_BROWSER_ARTIFACTS || join(REPO, "target/browser-artifacts"));
export const VIEWPORT = { width: 1280, height: 800 };

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns something truthy; fails with `what` (and the last error) after `timeout` ms. */
export async function until(what, fn, timeout = 15000, every = 150) {
  const end = Date.now() + timeout;
  let last = null;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = null;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? `: ${last.message}` : ""}`);
    await sleep(every);
  }
}

export function check(cond, message) {
  if (!cond) throw new Error(message);
}

/** The text of a locator with xterm's non-breaking spaces made plain and whitespace collapsed. */
export async function text(locator) {
  const t = await locator.textContent({ timeout: 5000 });
  return (t || "").replace(/\u00a0/g, " ").replace(/\s+/g, " ").trim();
}

/** The lines of an xterm.js screen (`.xterm-rows`), trimmed. */
export async function xtermLines(locator) {
  return locator.evaluate((rows) =>
    Array.from(rows.children).map((r) => (r.textContent || "").replace(/\u00a0/g, " ").trim()),
  );
}

export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** Starts `janus demo` on a free port with a temporary data dir; resolves once it printed its URL and logins. */
/** Starts `janus demo`; `args` and `env` are added to its command line and environment. */
export async function startDemo(binary, { args = [], env = {} } = {}) {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), "janus-browser-"));
  const log = createWriteStream(join(ARTIFACTS, "demo.log"));
  const child = spawn(binary, ["demo", "--port", String(port), "--data-dir", dataDir, "--short-ttls", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "warn", ...env },
  });
  child.stderr.pipe(log);
  const exited = new Promise((r) => child.once("exit", (code, sig) => r({ code, sig })));
  const lines = createInterface({ input: child.stdout });
  const demo = { child, dataDir, port, url: null, admin: null, engineer: null, exited };
  const ready = new Promise((res, rej) => {
    lines.on("line", (line) => {
      log.write(`[stdout] ${line}\n`);
      const m = /k8s-janus demo is running: (\S+)/.exec(line);
      if (m) demo.url = m[1];
      const w = line.trim().split(/\s+/);
      if (w[0] === "admin" && w.includes("password:")) demo.admin = w[w.length - 1];
      if (w[0] === "engineer" && w.includes("password:")) demo.engineer = w[w.length - 1];
      if (line.includes("Ctrl-C stops the demo")) res();
    });
    exited.then(({ code, sig }) => rej(new Error(`janus demo exited early (code ${code}, signal ${sig}); see ${ARTIFACTS}/demo.log`)));
  });
  const timer = sleep(120000).then(() => { throw new Error("janus demo did not report readiness within 120 s"); });
  try {
    await Promise.race([ready, timer]);
  } catch (e) {
    await stopDemo(demo);
    throw e;
  }
  check(demo.url && demo.admin && demo.engineer, `demo output not understood (url ${demo.url})`);
  check(demo.url.startsWith("http://127.0.0.1:"), `the demo listens on loopback only: ${demo.url}`);
  return demo;
}

export async function stopDemo(demo) {
  if (demo.child.exitCode === null && demo.child.signalCode === null) {
    demo.child.kill("SIGINT");
    const done = await Promise.race([demo.exited.then(() => true), sleep(15000).then(() => false)]);
    if (!done) {
      demo.child.kill("SIGKILL");
      await demo.exited;
    }
  }
  rmSync(demo.dataDir, { recursive: true, force: true });
}

/** The chromium binary: $CHROMIUM, else Debian's real binary behind the /usr/bin/chromium wrapper script. */
export function chromiumPath() {
  for (const p of [process.env.CHROMIUM, "/usr/lib/chromium/chromium", "/usr/bin/chromium"]) {
    if (p && existsSync(p)) return p;
  }
  return null;
}

/** playwright-core from .tools/node (scripts/install-test-tools.sh), or from wherever node resolves it. */
export async function loadPlaywright() {
  const local = join(REPO, ".tools/node/node_modules/playwright-core/index.mjs");
  if (existsSync(local)) return import(pathToFileURL(local).href);
  return import("playwright-core");
}

export async function launch(pw) {
  return pw.chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/**
 * Watches every page of a context: console errors, uncaught exceptions, CSP violations (the
 * `securitypolicyviolation` event, reported through a binding) and dialogs. Confirm dialogs are accepted
 * and recorded; any other dialog (an `alert` from injected script) is a problem.
 */
export class Guard {
  constructor() {
    this.problems = [];
    this.dialogs = [];
  }

  async watch(context, who) {
    await context.exposeBinding("__janusCspViolation", ({ page }, v) => {
      this.problems.push(`${who}: CSP violation on ${page.url()}: ${v.directive} blocked ${v.blocked || "(inline)"} ${v.sample || ""}`);
    });
    await context.addInitScript(() => {
      document.addEventListener(
        "securitypolicyviolation",
        (e) => window.__janusCspViolation({ directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample }),
        true,
      );
    });
    context.on("page", (page) => this.page(page, who));
    for (const p of context.pages()) this.page(p, who);
  }

  page(page, who) {
    page.on("console", (m) => {
      if (m.type() === "error" || /content.security.policy/i.test(m.text())) {
        const at = m.location() && m.location().url ? ` (${m.location().url})` : "";
        this.problems.push(`${who}: console.${m.type()} on ${page.url()}: ${m.text()}${at}`);
      }
    });
    page.on("pageerror", (e) => this.problems.push(`${who}: uncaught ${e.name}: ${e.message} on ${page.url()}`));
    page.on("dialog", async (d) => {
      this.dialogs.push({ who, type: d.type(), message: d.message() });
      if (d.type() === "confirm") await d.accept();
      else {
        this.problems.push(`${who}: unexpected ${d.type()} dialog on ${page.url()}: ${d.message()}`);
        await d.dismiss();
      }
    });
  }

  /** Fails if anything was reported since the last call. */
  assertClean(where) {
    if (this.problems.length) {
      const p = this.problems.splice(0);
      throw new Error(`browser problems during ${where}:\n  ${p.join("\n  ")}`);
    }
  }
}

export async function shot(page, name) {
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path });
  return path;
}

export function ensureArtifacts() {
  mkdirSync(ARTIFACTS, { recursive: true });
}
