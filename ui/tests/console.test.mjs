// Browser test of the web console against the real binary.
//
// Starts `signalbox serve` (SIGNALBOX_BIN, default ../../target/debug/signalbox) on free
// loopback ports with a temp data dir and an access token, drives Debian's Chromium through
// playwright-core, and checks: login, live registry updates over SSE (no reload), config
// create / edit / history / side-by-side diff / rollback / conflict, overview counts,
// placeholders, deep links, logout. Screenshots land in ./screenshots/.
//
//   SIGNALBOX_BIN=/path/to/signalbox node console.test.mjs

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(HERE, process.env.SIGNALBOX_BIN || '../../target/debug/signalbox');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = path.join(HERE, 'screenshots');
const TOTAL_MS = 60_000; // the whole run, start to finish
const WAIT_MS = 8_000; // one explicit wait
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const started = Date.now();
let node = null; // the signalbox child process
let nodeOutput = '';
let browser = null;
let tmp = null;
let passed = 0;
let failed = 0;
const pageProblems = [];

// Helpers -------------------------------------------------------------------------------

function log(...a) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s]`, ...a);
}

class AssertionError extends Error {}

function assert(cond, msg) {
  if (!cond) throw new AssertionError(msg);
}

function assertEq(actual, expected, what) {
  if (actual !== expected) throw new AssertionError(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed++;
    log(`FAIL ${name}: ${e.message}`);
    throw e;
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function distinctPorts(n) {
  const ports = new Set();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

async function waitReady(url, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (node.exitCode !== null || node.signalCode !== null) throw new Error(`signalbox exited early (${node.exitCode ?? node.signalCode})`);
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (r.status === 200) return;
      last = `status ${r.status}`;
    } catch (e) {
      last = e.cause ? e.cause.code || e.message : e.message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} not ready after ${timeoutMs} ms (${last})`);
}

async function shot(page, name, { tall = false } = {}) {
  fs.mkdirSync(SHOTS, { recursive: true });
  if (tall) await page.setViewportSize({ width: 1280, height: 1500 });
  await page.screenshot({ path: path.join(SHOTS, name) });
  if (tall) await page.setViewportSize({ width: 1280, height: 800 });
}

/** Waits until `selector`'s text content (trimmed) equals `text`. */
async function waitText(page, selector, text) {
  try {
    await page.waitForFunction(
      ([s, t]) => {
        const el = document.querySelector(s);
        return !!el && el.textContent.trim() === t;
      },
      [selector, text],
      { timeout: WAIT_MS },
    );
  } catch {
    const actual = await page.evaluate((s) => document.querySelector(s)?.textContent?.trim() ?? '(missing)', selector);
    throw new AssertionError(`${selector}: expected text ${JSON.stringify(text)}, got ${JSON.stringify(actual)}`);
  }
}

/** Waits until `selector`'s text content contains `text`. */
async function waitContains(page, selector, text) {
  try {
    await page.waitForFunction(([s, t]) => (document.querySelector(s)?.textContent || '').includes(t), [selector, text], { timeout: WAIT_MS });
  } catch {
    const actual = await page.evaluate((s) => document.querySelector(s)?.textContent?.trim() ?? '(missing)', selector);
    throw new AssertionError(`${selector}: expected to contain ${JSON.stringify(text)}, got ${JSON.stringify(actual)}`);
  }
}

/** Waits until the textarea/input `selector` holds `value`. */
async function waitValue(page, selector, value) {
  try {
    await page.waitForFunction(([s, v]) => document.querySelector(s)?.value === v, [selector, value], { timeout: WAIT_MS });
  } catch {
    const actual = await page.evaluate((s) => document.querySelector(s)?.value ?? '(missing)', selector);
    throw new AssertionError(`${selector}: expected value ${JSON.stringify(value)}, got ${JSON.stringify(actual)}`);
  }
}

async function waitVisible(page, selector) {
  await page.locator(selector).first().waitFor({ state: 'visible', timeout: WAIT_MS });
}

async function waitCount(page, selector, n) {
  try {
    await page.waitForFunction(([s, n]) => document.querySelectorAll(s).length === n, [selector, n], { timeout: WAIT_MS });
  } catch {
    const actual = await page.evaluate((s) => document.querySelectorAll(s).length, selector);
    throw new AssertionError(`${selector}: expected ${n} elements, found ${actual}`);
  }
}

// Main ---------------------------------------------------------------------------------

async function run() {
  assert(fs.existsSync(BIN), `no signalbox binary at ${BIN} (set SIGNALBOX_BIN)`);
  assert(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (apt-get install chromium)`);

  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'signalbox-ui-'));
  const secret = randomBytes(24).toString('hex');
  const sha = createHash('sha256').update(secret).digest('hex');
  const configFile = path.join(tmp, 'signalbox.toml');
  fs.writeFileSync(
    configFile,
    `[access]\ntokens = [{ id = "ops", role = "admin", sha256 = "${sha}" }]\n\n[gateway.telemetry]\naccess_log = "off"\n`,
  );
  const [gwPort, consolePort, consulPort, instA, instB, otlpGrpc, otlpHttp, zipkinPort] = await distinctPorts(8);
  const base = `http://127.0.0.1:${consolePort}`;

  const apiCall = async (method, p, body) => {
    const r = await fetch(base + p, {
      method,
      headers: { Authorization: `Bearer ${secret}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(5000),
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  };

  await step('start signalbox and wait for /readyz', async () => {
    node = spawn(
      BIN,
      ['serve', '--data-dir', path.join(tmp, 'data'), '--listen', `127.0.0.1:${gwPort}`, '--console-listen', `127.0.0.1:${consolePort}`, '--consul-listen', `127.0.0.1:${consulPort}`, '--otlp-grpc-listen', `127.0.0.1:${otlpGrpc}`, '--otlp-http-listen', `127.0.0.1:${otlpHttp}`, '--zipkin-listen', `127.0.0.1:${zipkinPort}`, '--config', configFile],
      // The node reads every SIGNALBOX_* variable as a config override (SIGNALBOX_BIN would
      // be the unknown key `bin`): start it without them.
      { stdio: ['ignore', 'pipe', 'pipe'], env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SIGNALBOX_'))) },
    );
    const keep = (d) => {
      nodeOutput = (nodeOutput + d.toString()).slice(-20_000);
    };
    node.stdout.on('data', keep);
    node.stderr.on('data', keep);
    await waitReady(`${base}/readyz`, 20_000);
  });

  let page;
  await step('launch Chromium', async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 15_000 });
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    page = await context.newPage();
    page.setDefaultTimeout(WAIT_MS);
    page.on('pageerror', (e) => pageProblems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      // Expected API refusals (401 before login, 400/409 in the tests) log "Failed to load
      // resource"; anything else (script errors, CSP violations) is a problem.
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) pageProblems.push(`console: ${m.text()}`);
    });
  });

  await step('login: the console asks for a token, refuses a bad one, accepts the right one', async () => {
    await page.goto(base + '/');
    await waitVisible(page, '[data-testid=login-form]');
    await shot(page, '01-login.png');
    await page.fill('[data-testid=login-token]', 'not-a-token');
    await page.click('[data-testid=login-submit]');
    await waitContains(page, '[data-testid=login-error]', 'Sign-in failed');
    await page.fill('[data-testid=login-token]', secret);
    await page.click('[data-testid=login-submit]');
    await waitText(page, '[data-testid=session-user]', 'ops');
    await waitText(page, '[data-testid=session-role]', 'admin');
    await waitVisible(page, '[data-testid=nav-services]');
    await waitText(page, '[data-testid=overview-services]', '0');
  });

  let idA;
  let idB;
  await step('services: a registered instance appears live, without a reload', async () => {
    await page.click('[data-testid=nav-services]');
    await page.waitForURL(base + '/services');
    await page.waitForSelector('[data-testid=live-indicator][data-state=live]');
    await page.evaluate(() => (window.__noReload = 'still here'));
    const r = await apiCall('POST', '/api/registry/instances', {
      service: 'orders',
      address: '127.0.0.1',
      port: instA,
      checks: [{ ttl: '30s', initial_status: 'passing' }],
    });
    assertEq(r.status, 201, 'register status');
    idA = r.body.id;
    await waitText(page, '[data-testid=service-row][data-service=orders] [data-testid=service-instances]', '1');
    await page.click('[data-testid=service-row][data-service=orders] [data-testid=service-link]');
    await page.waitForURL(base + '/services/orders');
    await waitVisible(page, `[data-testid=instance-row][data-instance-id="${idA}"][data-status=passing]`);
    await waitText(page, `[data-testid=instance-row][data-instance-id="${idA}"] [data-testid=instance-address]`, `127.0.0.1:${instA}`);
    await waitContains(page, `[data-testid=instance-row][data-instance-id="${idA}"] [data-testid=check]`, 'ttl 30s');

    // A second instance while the service is open.
    const r2 = await apiCall('POST', '/api/registry/instances', {
      service: 'orders',
      address: '127.0.0.1',
      port: instB,
      tags: ['canary'],
      checks: [{ ttl: '30s', initial_status: 'passing' }],
    });
    assertEq(r2.status, 201, 'second register status');
    idB = r2.body.id;
    await waitVisible(page, `[data-testid=instance-row][data-instance-id="${idB}"][data-status=passing]`);
    await waitText(page, '[data-testid=service-row][data-service=orders] [data-testid=service-instances]', '2');
    assertEq(await page.evaluate(() => window.__noReload), 'still here', 'page was not reloaded');
  });

  await step('services: a TTL report of critical turns the status badge critical live', async () => {
    const r = await apiCall('PUT', `/api/registry/instances/${encodeURIComponent(idA)}/ttl`, { status: 'critical' });
    assertEq(r.status, 204, 'ttl report status');
    const row = `[data-testid=instance-row][data-instance-id="${idA}"]`;
    await waitVisible(page, `${row}[data-status=critical]`);
    await waitText(page, `${row} [data-testid=instance-status]`, 'critical');
    const cls = await page.getAttribute(`${row} [data-testid=instance-status]`, 'class');
    assert(cls.includes('status-critical'), `badge class is ${cls}`);
    await page.waitForSelector('[data-testid=service-row][data-service=orders] [data-testid=service-critical][data-count="1"]');
    await waitText(page, `[data-testid=instance-row][data-instance-id="${idB}"] [data-testid=instance-status]`, 'passing');
    assertEq(await page.evaluate(() => window.__noReload), 'still here', 'page was not reloaded');
    // The console re-reads the registry every few seconds as a safety net; say so when a
    // change arrived that way instead of through the event stream.
    const fixes = await page.getAttribute('[data-testid=live-indicator]', 'data-resync-fixes');
    if (fixes !== '0') {
      log(`note: ${fixes} registry change(s) reached the page through the periodic resync, not the event stream (the node publishes a health change's index before logging the change, so /api/registry/events can skip it)`);
    }
    await shot(page, '03-services.png');
  });

  await step('config: create a key through the form (a bad name is refused with the field named)', async () => {
    await page.click('[data-testid=nav-config]');
    await page.waitForURL(base + '/config');
    await page.click('[data-testid=config-new]');
    await waitVisible(page, '[data-testid=new-key-form]');
    await page.fill('[data-testid=new-app]', 'orders');
    await page.fill('[data-testid=new-profile]', 'default');
    await page.fill('[data-testid=new-key]', 'bad key!');
    await page.fill('[data-testid=new-value]', 'postgres://a');
    await page.click('[data-testid=new-submit]');
    await waitContains(page, '[data-testid=new-error]', 'key:');
    await shot(page, '07-config-new-key-error.png');
    await page.fill('[data-testid=new-key]', 'db.url');
    await page.click('[data-testid=new-submit]');
    await page.waitForURL(base + '/config/orders/default/db.url');
    await waitValue(page, '[data-testid=config-editor]', 'postgres://a');
    await waitText(page, '[data-testid=config-version]', '1');
    await waitVisible(page, '[data-testid=config-key-link][data-app=orders][data-profile=default][data-key="db.url"]');
  });

  await step('config: edit and save with compare-and-set', async () => {
    await page.fill('[data-testid=config-editor]', 'postgres://b');
    await page.fill('[data-testid=config-comment]', 'move to b');
    await page.click('[data-testid=config-save]');
    await waitText(page, '[data-testid=config-version]', '2');
    await waitContains(page, '[data-testid=config-message]', 'Saved version 2');
    await waitCount(page, '[data-testid=history-row]', 2);
  });

  await step('config: history and the side-by-side diff of v1 and v2', async () => {
    await page.locator('[data-testid=history-panel]').scrollIntoViewIfNeeded();
    await page.check('[data-testid=diff-from][value="1"]');
    await page.check('[data-testid=diff-to][value="2"]');
    await page.click('[data-testid=diff-button]');
    await waitVisible(page, '[data-testid=diff-table][data-from="1"][data-to="2"]');
    const rows = await page.$$eval('[data-testid=diff-table] [data-testid=diff-row]', (trs) =>
      trs.map((tr) => {
        const old = tr.querySelector('[data-side=old]');
        const neu = tr.querySelector('[data-side=new]');
        return { oldOp: old.dataset.op, oldText: old.textContent, newOp: neu.dataset.op, newText: neu.textContent };
      }),
    );
    const pair = rows.find((r) => r.oldOp === 'delete' && r.oldText.includes('postgres://a'));
    assert(pair, `no deleted line "postgres://a" on the left: ${JSON.stringify(rows)}`);
    assertEq(pair.newOp, 'insert', 'the line beside the deletion');
    assert(pair.newText.includes('postgres://b'), `inserted line beside it is ${JSON.stringify(pair.newText)}`);
    const oldBg = await page.$eval('[data-testid=diff-table] [data-side=old][data-op=delete]', (e) => getComputedStyle(e).backgroundColor);
    const newBg = await page.$eval('[data-testid=diff-table] [data-side=new][data-op=insert]', (e) => getComputedStyle(e).backgroundColor);
    const rgb = (s) => s.match(/\d+/g).map(Number);
    const [or, og] = rgb(oldBg);
    const [nr, ng] = rgb(newBg);
    assert(or > og, `deleted line is not red: ${oldBg}`);
    assert(ng > nr, `inserted line is not green: ${newBg}`);
    await shot(page, '04-config-diff.png', { tall: true });
  });

  await step('config: roll back to v1 through the UI', async () => {
    await page.click('[data-testid=rollback-button][data-version="1"]');
    await waitText(page, '[data-testid=config-version]', '3');
    await waitValue(page, '[data-testid=config-editor]', 'postgres://a');
    await waitContains(page, '[data-testid=config-message]', 'Rolled back to version 1');
    await waitCount(page, '[data-testid=history-row]', 3);
    const r = await apiCall('GET', '/api/config/orders/default/db.url');
    assertEq(r.status, 200, 'GET key status');
    assertEq(r.body.version, 3, 'API version after rollback');
    assertEq(r.body.value, 'postgres://a', 'API value after rollback');
  });

  await step('config: a concurrent write makes Save report a version conflict, and Reload recovers', async () => {
    const r = await apiCall('PUT', '/api/config/orders/default/db.url', { value: 'postgres://c', comment: 'from elsewhere', expected_version: 3 });
    assertEq(r.status, 200, 'concurrent PUT status');
    await page.fill('[data-testid=config-editor]', 'postgres://d');
    await page.click('[data-testid=config-save]');
    await waitVisible(page, '[data-testid=config-conflict]');
    await waitContains(page, '[data-testid=config-conflict]', 'version 4');
    await shot(page, '05-config-conflict.png');
    await page.click('[data-testid=config-reload]');
    await waitValue(page, '[data-testid=config-editor]', 'postgres://c');
    await waitText(page, '[data-testid=config-version]', '4');
  });

  await step('overview: counts from the registry and configuration', async () => {
    await page.click('[data-testid=nav-overview]');
    await page.waitForURL(base + '/');
    await waitText(page, '[data-testid=overview-services]', '1');
    await waitText(page, '[data-testid=overview-instances]', '2');
    await waitText(page, '[data-testid=overview-critical]', '1');
    await waitText(page, '[data-testid=overview-passing]', '1');
    await waitText(page, '[data-testid=overview-config-keys]', '1');
    await shot(page, '02-overview.png');
  });

  await step('placeholders: Traces, Logs, Metrics, Alerts are real nav entries', async () => {
    for (const id of ['traces', 'logs', 'metrics', 'alerts']) {
      await page.click(`[data-testid=nav-${id}]`);
      await waitContains(page, '[data-testid=placeholder]', 'arrives with a later release');
      assertEq(await page.getAttribute(`[data-testid=nav-${id}]`, 'aria-current'), 'page', `nav-${id} active`);
    }
    await shot(page, '06-placeholder.png');
  });

  await step('deep link: /services/orders loads directly', async () => {
    await page.goto(base + '/services/orders');
    await waitText(page, '[data-testid=service-title]', 'orders');
    await waitCount(page, '[data-testid=instance-row]', 2);
    await waitText(page, `[data-testid=instance-row][data-instance-id="${idA}"] [data-testid=instance-status]`, 'critical');
  });

  await step('logout, then a deep link asks for the token and continues there', async () => {
    await page.click('[data-testid=logout]');
    await waitVisible(page, '[data-testid=login-form]');
    const r = await page.evaluate(() => fetch('/api/session').then((r) => r.status));
    assertEq(r, 401, 'session after logout');
    await page.goto(base + '/config');
    await waitVisible(page, '[data-testid=login-form]');
    await page.fill('[data-testid=login-token]', secret);
    await page.click('[data-testid=login-submit]');
    await waitVisible(page, '[data-testid=config-key-link][data-key="db.url"]');
    await waitVisible(page, '[data-testid=config-table]');
    assertEq(new URL(page.url()).pathname, '/config', 'path after login');
    await shot(page, '08-config-index.png');
  });

  await step('no script errors or CSP violations in the page', async () => {
    assert(pageProblems.length === 0, pageProblems.join('\n'));
  });
}

async function cleanup() {
  if (browser) {
    const b = browser;
    browser = null;
    await Promise.race([b.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
  }
  if (node && node.exitCode === null && node.signalCode === null) {
    const n = node;
    const exited = new Promise((r) => n.once('exit', r));
    n.kill('SIGTERM');
    const t = setTimeout(() => n.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  }
  if (tmp) {
    fs.rmSync(tmp, { recursive: true, force: true });
    tmp = null;
  }
}

const watchdog = setTimeout(async () => {
  log(`FAIL the test did not finish within ${TOTAL_MS / 1000} s`);
  failed++;
  if (nodeOutput) console.log('--- signalbox output (tail) ---\n' + nodeOutput.slice(-4000));
  await cleanup();
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(1);
}, TOTAL_MS);

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    await cleanup();
    process.exit(130);
  });
}

try {
  await run();
} catch (e) {
  if (!(e instanceof AssertionError)) console.log(e.stack || e);
  if (failed === 0) failed = 1;
  if (pageProblems.length) console.log('--- page problems ---\n' + pageProblems.join('\n'));
  if (nodeOutput) console.log('--- signalbox output (tail) ---\n' + nodeOutput.slice(-4000));
} finally {
  await cleanup();
  clearTimeout(watchdog);
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
