// Browser test of the web console against the real binary.
//
// Starts `signalbox serve` (SIGNALBOX_BIN, default ../../target/debug/signalbox) on free
// loopback ports with a temp data dir and an access token, drives Debian's Chromium through
// playwright-core, and checks: login, live registry updates over SSE (no reload), config
// create / edit / history / side-by-side diff / rollback / conflict, overview counts,
// traces (search form, scatter plot, result list with per-service counts from the summaries,
// waterfall with critical path, collapsing, span details, deep links, unknown ids; seeded as
// Zipkin JSON), the Logs page (logs.steps.mjs), the Metrics and Alerts pages
// (metrics.steps.mjs, on the node's own metrics stored every second), the shared live
// stream, cross-signal links, theme, time zone and a 500-span trace (platform.steps.mjs),
// rollouts (rollouts.steps.mjs),
// deep links, logout.
// Screenshots land in ./screenshots/.
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
import { logsSteps } from './logs.steps.mjs';
import { metricsSteps } from './metrics.steps.mjs';
import { platformSteps } from './platform.steps.mjs';
import { rolloutsSteps } from './rollouts.steps.mjs';
import { viewsSteps, viewsGatewayToml, viewsUpstream } from './views.steps.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(HERE, process.env.SIGNALBOX_BIN || '../../target/debug/signalbox');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = path.join(HERE, 'screenshots');
const TOTAL_MS = 300_000; // the whole run, start to finish
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
const liveRequests = []; // URLs of the live-update connections the page opened

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


/**
 * Four traces as Zipkin v2 JSON, relative to `nowMs`:
 * - slow: checkout across frontend, orders, inventory, payments (11 spans, 6 levels, 420 ms,
 *   user.tier=gold), the payments server span failed ("card declined");
 * - fast: the same shape at a quarter of the time (105 ms, gold), no error;
 * - cart: GET /cart -> cart, both failed (timeout);
 * - health: one 2 ms span.
 * The slow trace's critical path runs root -> POST orders -> POST /orders -> {publish, charge
 * -> POST /charge -> fraud check, reserve -> POST /reserve -> SELECT stock}; INSERT payments
 * overlaps fraud check and is not on it.
 */
function seedTraces(nowMs) {
  const id32 = () => randomBytes(16).toString('hex');
  const ids = { slow: id32(), fast: id32(), cart: id32(), health: id32() };
  const spans = [];
  const sp = (traceId, id, parentId, service, name, kind, startMs, durMs, tags = {}, extra = {}) =>
    spans.push({
      traceId,
      id,
      ...(parentId ? { parentId } : {}),
      name,
      kind,
      timestamp: Math.round((nowMs + startMs) * 1000),
      duration: Math.round(durMs * 1000),
      localEndpoint: { serviceName: service },
      tags,
      ...extra,
    });
  const checkout = (t, p, at, k, fail) => {
    const x = (ms) => at + ms * k;
    sp(t, `${p}01`, null, 'frontend', 'GET /checkout', 'SERVER', x(0), 420 * k, { 'http.method': 'GET', 'http.route': '/checkout', 'http.status_code': '200', 'user.tier': 'gold' }, {
      annotations: [
        { timestamp: Math.round((nowMs + x(1)) * 1000), value: 'request.received' },
        { timestamp: Math.round((nowMs + x(418)) * 1000), value: 'response.sent' },
      ],
    });
    sp(t, `${p}02`, `${p}01`, 'frontend', 'POST orders', 'CLIENT', x(10), 390 * k, { 'http.method': 'POST' }, { remoteEndpoint: { serviceName: 'orders' } });
    sp(t, `${p}03`, `${p}02`, 'orders', 'POST /orders', 'SERVER', x(15), 380 * k, { 'http.route': '/orders' });
    sp(t, `${p}04`, `${p}03`, 'orders', 'reserve', 'CLIENT', x(20), 100 * k, {}, { remoteEndpoint: { serviceName: 'inventory' } });
    sp(t, `${p}05`, `${p}04`, 'inventory', 'POST /reserve', 'SERVER', x(25), 90 * k, { 'db.system': 'postgresql' });
    sp(t, `${p}06`, `${p}05`, 'inventory', 'SELECT stock', 'CLIENT', x(30), 40 * k, { 'db.statement': 'SELECT * FROM stock WHERE sku = $1' });
    sp(t, `${p}07`, `${p}03`, 'orders', 'charge', 'CLIENT', x(130), 240 * k, {}, { remoteEndpoint: { serviceName: 'payments' } });
    sp(t, `${p}08`, `${p}07`, 'payments', 'POST /charge', 'SERVER', x(135), 230 * k, fail ? { error: 'card declined', 'payment.provider': 'acme' } : { 'payment.provider': 'acme' }, {
      localEndpoint: { serviceName: 'payments', ipv4: '10.0.0.7', port: 8080 },
    });
    sp(t, `${p}09`, `${p}08`, 'payments', 'INSERT payments', 'CLIENT', x(140), 60 * k, { 'db.system': 'postgresql' });
    sp(t, `${p}0a`, `${p}08`, 'payments', 'fraud check', 'CLIENT', x(150), 200 * k);
    sp(t, `${p}0b`, `${p}03`, 'orders', 'publish order.created', 'PRODUCER', x(375), 2 * k);
  };
  checkout(ids.slow, '10000000000000', -9000, 1, true);
  checkout(ids.fast, '20000000000000', -7000, 0.25, false);
  sp(ids.cart, '3000000000000001', null, 'frontend', 'GET /cart', 'SERVER', -5000, 30, { 'http.route': '/cart', 'http.status_code': '504', 'user.tier': 'free', error: 'upstream timeout' });
  sp(ids.cart, '3000000000000002', '3000000000000001', 'cart', 'load cart', 'SERVER', -4998, 26, { error: 'timeout' });
  sp(ids.health, '4000000000000001', null, 'frontend', 'GET /health', 'SERVER', -3000, 2, { 'http.route': '/health' });
  return { ids, spans };
}

// Main ---------------------------------------------------------------------------------

async function run() {
  assert(fs.existsSync(BIN), `no signalbox binary at ${BIN} (set SIGNALBOX_BIN)`);
  assert(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (apt-get install chromium)`);

  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'signalbox-ui-'));
  const secret = randomBytes(24).toString('hex');
  const sha = createHash('sha256').update(secret).digest('hex');
  const [gwPort, consolePort, consulPort, instA, instB, otlpGrpc, otlpHttp, zipkinPort, closedPort, checkoutPort] = await distinctPorts(10);
  await viewsUpstream(checkoutPort);
  const configFile = path.join(tmp, 'signalbox.toml');
  // A rule file with an alert that fires on the node's own metrics, one that never fires
  // and a recording rule, so the Alerts page shows real rule states.
  const rulesFile = path.join(tmp, 'rules.yml');
  fs.writeFileSync(
    rulesFile,
    [
      'groups:',
      '  - name: payments',
      '    interval: 1s',
      '    rules:',
      '      - alert: PaymentsErrors',
      '        expr: max(signalbox_tsdb_head_series{job="signalbox"}) > 0',
      '        labels: {severity: page, service: payments}',
      '        annotations: {summary: Payments fail, description: More than 5% of payments fail}',
      '      - alert: CheckoutSlow',
      '        expr: max(signalbox_tsdb_head_series{job="signalbox"}) < 0',
      '      - record: job:up:sum',
      '        expr: count by (job) (signalbox_tsdb_head_series)',
      '',
    ].join('\n'),
  );
  fs.writeFileSync(
    configFile,
    `[access]\ntokens = [{ id = "ops", role = "admin", sha256 = "${sha}" }]\n\n[gateway.telemetry]\naccess_log = "off"\n\n[traces.sampling]\ndecision_wait = "1s"\n\n[metrics]\nself_interval = "1s"\n\n[[metrics.scrape]]\njob_name = "self"\nscrape_interval = "1s"\nscrape_timeout = "1s"\n[metrics.scrape.authorization]\ncredentials = "${secret}"\n[[metrics.scrape.metric_relabel_configs]]\naction = "drop"\nsource_labels = ["__name__"]\nregex = ".+"\n[[metrics.scrape.static_configs]]\ntargets = ["127.0.0.1:${consolePort}"]\n\n[[metrics.scrape]]\njob_name = "closed-port"\nscrape_interval = "1s"\nscrape_timeout = "1s"\n[[metrics.scrape.static_configs]]\ntargets = ["127.0.0.1:${closedPort}"]\n\n[metrics.rules]\nfiles = ["${rulesFile}"]\nevaluation_interval = "1s"\ndefault_rules = false\n${viewsGatewayToml(checkoutPort)}`,
  );
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
    // A cold Chromium on a busy 2-core machine can take longer than a warm one: three tries.
    for (let attempt = 1; ; attempt++) {
      try {
        browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 45_000 });
        break;
      } catch (e) {
        if (attempt >= 3) throw e;
        console.log(`Chromium did not start (attempt ${attempt}): ${String(e).split('\n')[0]}`);
      }
    }
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    page = await context.newPage();
    page.setDefaultTimeout(WAIT_MS);
    page.on('pageerror', (e) => pageProblems.push(`page error: ${e.message}`));
    page.on('request', (r) => {
      if (/\/api\/(live|registry\/events)/.test(r.url())) liveRequests.push(r.url());
    });
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


  // Traces are seeded early: the node stores a trace once it has been quiet for a moment.
  let traceIds;
  let seeded; // trace id -> { services: {service: spans}, errors } from the seeded spans
  let traceNow; // when the traces were seeded (their times are relative to it)
  await step('traces: seed four traces as Zipkin JSON', async () => {
    traceNow = Date.now();
    const { ids, spans } = seedTraces(traceNow);
    traceIds = ids;
    seeded = new Map(Object.values(ids).map((id) => [id, { services: {}, errors: 0 }]));
    for (const s of spans) {
      const t = seeded.get(s.traceId);
      const svc = s.localEndpoint.serviceName;
      t.services[svc] = (t.services[svc] || 0) + 1;
      if (s.tags.error !== undefined) t.errors++;
    }
    const r = await fetch(`${base}/zipkin/api/v2/spans`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${secret}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(spans),
      signal: AbortSignal.timeout(5000),
    });
    assertEq(r.status, 202, `zipkin ingest status (${await r.text()})`);
    // Over OTLP/JSON: a span with a resource, a scope and a link to the slow trace's charge.
    traceIds.linked = randomBytes(16).toString('hex');
    const at = (ms) => String(BigInt(Date.now() - ms) * 1_000_000n);
    const o = await fetch(`http://127.0.0.1:${otlpHttp}/v1/traces`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${secret}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ resourceSpans: [{
        resource: { attributes: [{ key: 'service.name', value: { stringValue: 'audit' } }, { key: 'host.name', value: { stringValue: 'audit-1' } }] },
        scopeSpans: [{ scope: { name: 'audit.lib', version: '2.0' }, spans: [{
          traceId: traceIds.linked, spanId: '5000000000000001', name: 'record payment', kind: 5, startTimeUnixNano: at(2000), endTimeUnixNano: at(1990),
          attributes: [{ key: 'audit.kind', value: { stringValue: 'charge' } }],
          links: [{ traceId: traceIds.slow, spanId: '1000000000000008', attributes: [{ key: 'link.reason', value: { stringValue: 'audits' } }] }],
        }] }],
      }] }),
      signal: AbortSignal.timeout(5000),
    });
    assertEq(o.status, 200, `otlp ingest status (${await o.text()})`);
    // A Zipkin shared span: the client half and the server half (`shared`) with one id.
    traceIds.shared = randomBytes(16).toString('hex');
    const us = (ms) => Math.round((Date.now() - ms) * 1000);
    const z = await fetch(`${base}/zipkin/api/v2/spans`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${secret}`, 'Content-Type': 'application/json' },
      body: JSON.stringify([
        { traceId: traceIds.shared, id: '6000000000000001', name: 'post /pay', kind: 'CLIENT', timestamp: us(2500), duration: 30000, localEndpoint: { serviceName: 'shop' } },
        { traceId: traceIds.shared, id: '6000000000000001', name: 'post /pay', kind: 'SERVER', shared: true, timestamp: us(2495), duration: 20000, localEndpoint: { serviceName: 'pay' }, tags: { error: 'card service down' } },
        { traceId: traceIds.shared, id: '6000000000000002', parentId: '6000000000000001', name: 'charge', timestamp: us(2490), duration: 5000, localEndpoint: { serviceName: 'pay' } },
      ]),
      signal: AbortSignal.timeout(5000),
    });
    assertEq(z.status, 202, `zipkin shared span ingest status (${await z.text()})`);
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
    await page.waitForURL((u) => u.pathname === '/services/orders');
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
    // The row changed, and every instance passes: it must not flash the warning colour.
    const svcRow = '[data-testid=service-row][data-service=orders]';
    assertEq(await page.getAttribute(svcRow, 'data-health'), 'passing', 'an all-passing service is marked passing');
    const anim = await page.$eval(svcRow, (el) => getComputedStyle(el).animationName);
    assert(anim !== 'flash', `an all-passing service is highlighted as needing attention (animation ${anim})`);
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
    assertEq(await page.getAttribute('[data-testid=service-row][data-service=orders]', 'data-health'), 'critical', 'the service row shows its worst health');
    await waitText(page, `[data-testid=instance-row][data-instance-id="${idB}"] [data-testid=instance-status]`, 'passing');
    assertEq(await page.evaluate(() => window.__noReload), 'still here', 'page was not reloaded');
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


  await step('traces: the seeded traces become searchable', async () => {
    const deadline = Date.now() + 15_000;
    let last = null;
    while (Date.now() < deadline) {
      const r = await apiCall('GET', '/api/traces?service=frontend&lookback=1h&limit=50');
      last = r.body;
      const got = new Map((r.body?.traces || []).map((t) => [t.trace_id, t.span_count]));
      if (got.get(traceIds.slow) === 11 && got.get(traceIds.fast) === 11 && got.get(traceIds.cart) === 2 && got.get(traceIds.health) === 1) return;
      await new Promise((res) => setTimeout(res, 200));
    }
    throw new AssertionError(`traces not searchable after 15 s: ${JSON.stringify(last)}`);
  });

  const point = '[data-testid=scatter-point]';
  const result = '[data-testid=trace-result]';
  await step('traces: search by service from the form; scatter plot and list show every trace', async () => {
    await page.click('[data-testid=nav-traces]');
    await page.waitForURL(base + '/traces');
    await waitVisible(page, '[data-testid=traces-idle]');
    await page.selectOption('[data-testid=traces-service]', 'frontend');
    // The list takes per-service and error counts from the search summaries: no request
    // for a single trace (/api/traces/{id}) while it searches and paints.
    const traceFetches = [];
    const onRequest = (req) => {
      const p = new URL(req.url()).pathname;
      if (/^\/api\/traces\/[^/]+$/.test(p) && !['/api/traces/services', '/api/traces/dependencies'].includes(p)) traceFetches.push(p);
    };
    page.on('request', onRequest);
    await page.click('[data-testid=traces-search]');
    await page.waitForURL((u) => u.pathname === '/traces' && u.searchParams.get('service') === 'frontend');
    await waitCount(page, point, 4);
    await waitCount(page, `${point}[data-error=true]`, 2);
    await waitCount(page, result, 4);
    const order = await page.$$eval(result, (els) => els.map((e) => e.dataset.traceId));
    assertEq(order.join(','), [traceIds.health, traceIds.cart, traceIds.fast, traceIds.slow].join(','), 'newest first');
    await waitContains(page, `${result}[data-trace-id="${traceIds.slow}"] [data-testid=trace-result-title]`, 'frontend: GET /checkout');
    await waitText(page, `${result}[data-trace-id="${traceIds.slow}"] [data-testid=trace-result-spans]`, '11 spans');
    await waitText(page, `${result}[data-trace-id="${traceIds.slow}"] [data-testid=trace-result-duration]`, '420ms');
    assertEq(await page.getAttribute(`${result}[data-trace-id="${traceIds.cart}"]`, 'data-error'), 'true', 'cart trace marked failed');
    // Per-service span counts and error counts, from the summaries.
    await waitText(page, `${result}[data-trace-id="${traceIds.slow}"] [data-service=payments] .svc-count`, '3');
    await waitText(page, `${result}[data-trace-id="${traceIds.slow}"] [data-service=orders] .svc-count`, '4');
    const listed = await page.$$eval(result, (els) =>
      els.map((e) => ({
        id: e.dataset.traceId,
        services: Object.fromEntries(Array.from(e.querySelectorAll('[data-testid=trace-result-service]'), (b) => [b.dataset.service, b.querySelector('.svc-count')?.textContent ?? ''])),
        errors: e.querySelector('[data-testid=trace-result-errors]')?.textContent ?? null,
      })),
    );
    for (const { id, services, errors } of listed) {
      const want = seeded.get(id);
      assert(want, `unexpected trace ${id} in the list`);
      const expected = Object.fromEntries(Object.entries(want.services).map(([k, v]) => [k, String(v)]).sort());
      assertEq(JSON.stringify(Object.fromEntries(Object.entries(services).sort())), JSON.stringify(expected), `service badges of ${id}`);
      assertEq(errors, want.errors ? `${want.errors} error${want.errors === 1 ? '' : 's'}` : null, `error badge of ${id}`);
    }
    assertEq(await page.getAttribute(`${result}[data-trace-id="${traceIds.cart}"] [data-testid=trace-result-errors]`, 'data-count'), '2', 'error spans of the cart trace');
    // Requests are reported asynchronously: give any late one a moment to show up.
    await new Promise((r) => setTimeout(r, 300));
    page.off('request', onRequest);
    assertEq(traceFetches.join(' '), '', 'single-trace requests during the search');
    await shot(page, '09-traces-search.png');
  });

  await step('traces: a tag and a min duration together narrow it to the slow checkout', async () => {
    await page.fill('[data-testid=traces-tags]', 'user.tier=gold');
    await page.fill('[data-testid=traces-min-duration]', '200ms');
    await page.click('[data-testid=traces-search]');
    await page.waitForURL((u) => u.searchParams.get('minDuration') === '200ms' && u.searchParams.get('tag') === 'user.tier=gold');
    await waitCount(page, point, 1);
    await waitCount(page, result, 1);
    assertEq(await page.getAttribute(point, 'data-trace-id'), traceIds.slow, 'the one point');
    // A bad duration is refused in the form, naming the field.
    await page.fill('[data-testid=traces-max-duration]', 'soon');
    await page.click('[data-testid=traces-search]');
    await waitContains(page, '[data-testid=traces-maxDuration-error]', 'duration');
    await page.fill('[data-testid=traces-max-duration]', '');
  });

  const row = (sid) => `[data-testid=span-row][data-span-id="${sid}"]`;
  const visibleRows = () => page.$$eval('[data-testid=span-row]', (els) => els.filter((e) => !e.hidden).length);
  await step('traces: a scatter point opens the waterfall with the critical path and the error span', async () => {
    await page.click(point);
    await page.waitForURL(`${base}/traces/${traceIds.slow}`);
    await waitCount(page, '[data-testid=span-row]', 11);
    await waitText(page, '[data-testid=trace-title]', 'frontend: GET /checkout');
    await waitText(page, '[data-testid=trace-spans]', '11');
    await waitText(page, '[data-testid=trace-depth]', '6');
    await waitText(page, '[data-testid=trace-services]', '4');
    await waitText(page, '[data-testid=trace-duration]', '420ms');
    // Tree order and indentation.
    const shape = await page.$$eval('[data-testid=span-row]', (els) => els.map((e) => `${e.dataset.depth}:${e.querySelector('.wf-op').textContent}`));
    assertEq(shape.slice(0, 6).join('|'), '0:GET /checkout|1:POST orders|2:POST /orders|3:reserve|4:POST /reserve|5:SELECT stock', 'tree order');
    // The critical path.
    const critical = await page.$$eval('[data-testid=span-row][data-critical=true]', (els) => els.map((e) => e.querySelector('.wf-op').textContent).sort());
    assertEq(critical.join('|'), ['GET /checkout', 'POST orders', 'POST /orders', 'reserve', 'POST /reserve', 'SELECT stock', 'charge', 'POST /charge', 'fraud check', 'publish order.created'].sort().join('|'), 'spans on the critical path');
    assertEq(await page.getAttribute(row('1000000000000009'), 'data-critical'), 'false', 'INSERT payments off the critical path');
    assert((await page.locator('[data-testid=critical-segment]').count()) >= 10, 'critical path segments drawn on the bars');
    // The failed span.
    assertEq(await page.getAttribute(row('1000000000000008'), 'data-error'), 'true', 'POST /charge marked failed');
    await waitCount(page, '[data-testid=span-row] [data-testid=span-error]', 1);
    await shot(page, '10-trace-waterfall.png');
  });

  await step('traces: subtrees collapse and expand, one by one and all at once', async () => {
    await page.click(`${row('1000000000000003')} [data-testid=span-toggle]`);
    assertEq(await visibleRows(), 3, 'rows with POST /orders collapsed');
    assertEq(await page.getAttribute(row('1000000000000003'), 'aria-expanded'), 'false', 'aria-expanded');
    await page.click(`${row('1000000000000003')} [data-testid=span-toggle]`);
    assertEq(await visibleRows(), 11, 'rows expanded again');
    await page.click('[data-testid=collapse-all]');
    assertEq(await visibleRows(), 1, 'rows after collapse all');
    await page.click('[data-testid=expand-all]');
    assertEq(await visibleRows(), 11, 'rows after expand all');
  });

  await step('traces: clicking a span shows its details, attributes and events, and deep-links it', async () => {
    await page.click(`${row('1000000000000008')} .wf-op`);
    await page.waitForURL(`${base}/traces/${traceIds.slow}?span=1000000000000008`);
    await waitVisible(page, '[data-testid=span-detail][data-span-id="1000000000000008"]');
    await waitText(page, '[data-testid=span-detail] [data-testid=span-status-message]', 'card declined');
    await waitText(page, '[data-testid=span-detail] [data-testid=span-attr][data-key="payment.provider"] [data-testid=span-attr-value]', 'acme');
    // The resource (here Zipkin's localEndpoint address) is its own table, not attributes.
    await waitText(page, '[data-testid=span-resource] [data-testid=span-attr][data-key="net.host.ip"] [data-testid=span-attr-value]', '10.0.0.7');
    await waitCount(page, '[data-testid=span-attributes] [data-testid=span-attr][data-key="net.host.ip"]', 0);
    await waitCount(page, '[data-testid=span-resource] [data-testid=span-attr][data-key="payment.provider"]', 0);
    await page.click(`${row('1000000000000001')} .wf-op`);
    await page.waitForURL(`${base}/traces/${traceIds.slow}?span=1000000000000001`);
    await waitText(page, '[data-testid=span-detail] [data-testid=span-attr][data-key="user.tier"] [data-testid=span-attr-value]', 'gold');
    await waitText(page, '[data-testid=span-detail] [data-testid=span-attr][data-key="http.route"] [data-testid=span-attr-value]', '/checkout');
    await waitCount(page, '[data-testid=span-detail] [data-testid=span-event]', 2);
    await waitText(page, '[data-testid=span-detail] [data-testid=span-event-name]', 'request.received');
    await shot(page, '11-trace-span-detail.png');
    // Enter on a focused row closes the panel again.
    await page.focus(row('1000000000000001'));
    await page.keyboard.press('Enter');
    await page.waitForURL(`${base}/traces/${traceIds.slow}`);
    await waitCount(page, '[data-testid=span-detail]', 0);
  });

  await step('traces: a span\'s resource, scope and links, and following a link', async () => {
    await page.goto(`${base}/traces/${traceIds.linked}?span=5000000000000001`);
    await waitVisible(page, '[data-testid=span-detail][data-span-id="5000000000000001"]');
    await waitText(page, '[data-testid=span-detail] [data-testid=span-scope]', 'audit.lib 2.0');
    await waitText(page, '[data-testid=span-resource] [data-testid=span-attr][data-key="host.name"] [data-testid=span-attr-value]', 'audit-1');
    await waitCount(page, '[data-testid=span-resource] [data-testid=span-attr]', 1);
    await waitCount(page, '[data-testid=span-resource] [data-testid=span-attr][data-key^="otel.scope"]', 0);
    await waitCount(page, '[data-testid=span-attributes] [data-testid=span-attr]', 1);
    await waitCount(page, '[data-testid=span-links] [data-testid=span-link-row]', 1);
    await waitContains(page, '[data-testid=span-links] [data-testid=span-link-row]', 'audits');
    await shot(page, '11b-trace-span-links.png');
    await page.click('[data-testid=span-link-target]');
    await page.waitForURL(`${base}/traces/${traceIds.slow}?span=1000000000000008`);
    await waitVisible(page, '[data-testid=span-detail][data-span-id="1000000000000008"]');
  });

  await step('traces: a Zipkin shared span shows both halves, the server under the client', async () => {
    await page.goto(`${base}/traces/${traceIds.shared}`);
    await waitCount(page, '[data-testid=span-row]', 3);
    assertEq(await page.getAttribute('[data-testid=span-row][data-service=shop]', 'data-depth'), '0', 'client half depth');
    assertEq(await page.getAttribute('[data-testid=span-row][data-service=pay][data-span-id="6000000000000001"]', 'data-depth'), '1', 'server half depth');
    assertEq(await page.getAttribute('[data-testid=span-row][data-span-id="6000000000000002"]', 'data-depth'), '2', 'the server child depth');
    assertEq(await page.getAttribute('[data-testid=span-row][data-service=pay][data-span-id="6000000000000001"]', 'data-error'), 'true', 'the server half failed');
  });

  await step('traces: deep links to a span, to a search, and an unknown trace id', async () => {
    await page.goto(`${base}/traces/${traceIds.slow}?span=1000000000000007`);
    await waitVisible(page, '[data-testid=span-detail][data-span-id="1000000000000007"]');
    await waitCount(page, '[data-testid=span-row]', 11);
    assertEq(await page.getAttribute('[data-testid=nav-traces]', 'aria-current'), 'page', 'nav-traces active');
    // A span that is not in the trace is named; moving on to the trace without a span
    // (in-app navigation) clears that notice again.
    const goInApp = (to) =>
      page.evaluate((u) => {
        history.pushState(null, '', u);
        dispatchEvent(new PopStateEvent('popstate'));
      }, to);
    await goInApp(`/traces/${traceIds.slow}?span=ffffffffffffffff`);
    await waitContains(page, '[data-testid=span-missing]', 'is not in this trace');
    await waitCount(page, '[data-testid=span-detail]', 0);
    await goInApp(`/traces/${traceIds.slow}`);
    await waitText(page, '[data-testid=span-missing]', '');

    await page.goto(`${base}/traces?service=frontend&tag=user.tier%3Dgold&minDuration=200ms&lookback=1h&limit=20`);
    await waitCount(page, point, 1);
    await waitValue(page, '[data-testid=traces-tags]', 'user.tier=gold');
    await waitValue(page, '[data-testid=traces-min-duration]', '200ms');
    await waitValue(page, '[data-testid=traces-service]', 'frontend');
    // Conditions hold for one span: a frontend span failed only in the cart trace.
    await page.goto(`${base}/traces?service=frontend&errors=1`);
    await waitCount(page, point, 1);
    assertEq(await page.getAttribute(point, 'data-trace-id'), traceIds.cart, 'failed frontend span');
    // Every service: the slow checkout, the cart, and the shared span's failed server half.
    await page.goto(`${base}/traces?errors=1`);
    await waitCount(page, `${point}[data-error=true]`, 3);
    await waitCount(page, point, 3);
    await page.goto(`${base}/traces?service=frontend&limit=0`);
    await waitContains(page, '[data-testid=traces-error]', 'limit: must be between 1 and 10000');
    await page.goto(`${base}/traces?service=nobody`);
    await waitVisible(page, '[data-testid=traces-empty]');

    await page.goto(`${base}/traces/0123456789abcdef0123456789abcdef`);
    await waitContains(page, '[data-testid=trace-not-found]', 'No trace with this ID');
    await waitContains(page, '[data-testid=trace-not-found]', 'trace 0123456789abcdef0123456789abcdef not found');
    await page.goto(`${base}/traces/not-a-trace`);
    await waitContains(page, '[data-testid=trace-error]', 'trace_id: must be 32 (or 16) hex digits');
  });

  await step('traces: leaving a running search for the empty Traces page keeps it empty', async () => {
    const slowSearch = async (route) => {
      await new Promise((r) => setTimeout(r, 400));
      await route.continue().catch(() => {});
    };
    await page.route(/\/api\/traces\?/, slowSearch);
    try {
      await page.goto(`${base}/traces?service=frontend`);
      await waitVisible(page, '[data-testid=traces-loading]');
      await page.click('[data-testid=nav-traces]');
      await page.waitForURL(base + '/traces');
      await waitVisible(page, '[data-testid=traces-idle]');
      // The search answers after that: the page must stay idle.
      await new Promise((r) => setTimeout(r, 700));
    } finally {
      await page.unroute(/\/api\/traces\?/, slowSearch);
    }
    await waitVisible(page, '[data-testid=traces-idle]');
    await waitCount(page, result, 0);
    await waitText(page, '[data-testid=traces-search]', 'Find traces');
  });

  await logsSteps({ page, base, secret, traceIds, traceNow }, { step, assert, assertEq, waitVisible, waitValue, waitCount, waitText, waitContains, shot, WAIT_MS });

  await metricsSteps({ page, base, secret }, { step, assert, assertEq, waitVisible, waitValue, waitCount, waitText, waitContains, shot, WAIT_MS });

  await viewsSteps({ page, base, secret, gwPort }, { step, assert, assertEq, waitVisible, waitText, waitContains, shot, WAIT_MS });

  await platformSteps({ page, base, secret, liveRequests, traceIds, traceNow }, { step, assert, assertEq, waitVisible, waitCount, waitText, waitContains, shot, WAIT_MS });

  await rolloutsSteps({ page, base, secret }, { step, assert, assertEq, waitVisible, waitContains, shot, WAIT_MS });

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
