// End-to-end browser test of the troubleshooting loop on `signalbox demo`.
//
// Spawns the real binary (SIGNALBOX_BIN, default ../../target/debug/signalbox) as
// `signalbox demo --port 0 --speed 20 --seed 7 --duration 600s`, reads the console URL from
// its `console:` line and walks, in Debian's headless Chromium: the overview shows the demo's
// five services with rates -> the map shows their edges -> an alert fires (Alerts page) ->
// its link opens the service page at the alert's window -> the logs of that window -> a
// failing request's trace (a log line's trace link, else the service page's failing traces)
// -> its waterfall (the gateway's spans and the services' own OpenTelemetry SDK spans) -> the
// span's edge on the service map with its side panel -> the bad canary rolled back on the
// Rollouts page. Then SIGINT: the demo exits 0 within
// a bound and its console port is closed. Every wait is bounded; the whole run stops itself
// after TOTAL_MS. Screenshots land in ./screenshots/demo-*.png; the first paint and page
// switch times on the demo's data are printed (docs/benchmarks.md, "Demo and console").
//
//   SIGNALBOX_BIN=/path/to/signalbox node demo.test.mjs

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(HERE, process.env.SIGNALBOX_BIN || '../../target/debug/signalbox');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = path.join(HERE, 'screenshots');
const TOTAL_MS = 240_000; // the whole run, start to finish
const WAIT_MS = 15_000; // one explicit wait on a page (generous: a loaded 2-core machine)
const SPEED = 20;
const DEMO_DURATION = '600s'; // well past the test's own bound: the test stops it with SIGINT
const SERVICES = ['web-frontend', 'orders', 'payments', 'inventory', 'inventory-db'];
const EDGES = ['web-frontend>orders', 'orders>payments', 'orders>inventory', 'inventory>inventory-db'];
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const started = Date.now();
let demo = null; // the `signalbox demo` child process
let demoOutput = ''; // its stdout and stderr (tail)
const demoLines = []; // its stdout lines: { atMs, line }
let browser = null;
let passed = 0;
let failed = 0;
const pageProblems = [];
const measured = [];

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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function demoAlive() {
  return demo && demo.exitCode === null && demo.signalCode === null;
}

/** Polls `probe` (returns a truthy value when done) every `everyMs` until `timeoutMs`. */
async function until(what, timeoutMs, probe, everyMs = 500) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    if (!demoAlive()) throw new Error(`the demo exited early (${demo.exitCode ?? demo.signalCode}) while waiting for ${what}`);
    try {
      last = await probe();
      if (last && last.done !== false) return last;
    } catch (e) {
      last = e.message;
    }
    await sleep(everyMs);
  }
  throw new AssertionError(`${what}: not within ${timeoutMs} ms (last: ${JSON.stringify(last)?.slice(0, 400)})`);
}

async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.setViewportSize({ width: 1280, height: 1400 });
  await page.screenshot({ path: path.join(SHOTS, name) });
  await page.setViewportSize({ width: 1280, height: 800 });
}

async function waitVisible(page, selector, timeout = WAIT_MS) {
  await page.locator(selector).first().waitFor({ state: 'visible', timeout });
}

/** Times from a click (or navigation) to `selector` visible, for the benchmarks. */
async function timed(what, page, action, selector) {
  const t0 = Date.now();
  await action();
  await waitVisible(page, selector);
  const ms = Date.now() - t0;
  measured.push(`${what} ${ms} ms`);
  return ms;
}

function portOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const done = (open) => {
      s.destroy();
      resolve(open);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(2000, () => done(false));
  });
}

// Main ---------------------------------------------------------------------------------

async function run() {
  assert(fs.existsSync(BIN), `no signalbox binary at ${BIN} (set SIGNALBOX_BIN)`);
  assert(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (apt-get install chromium)`);

  let base = '';
  let consolePort = 0;
  const apiGet = async (p) => {
    const r = await fetch(base + p, { signal: AbortSignal.timeout(5000) });
    assertEq(r.status, 200, `GET ${p}`);
    return r.json();
  };

  await step(`start signalbox demo (speed ${SPEED}, seed 7) and read its console line`, async () => {
    // The node reads every SIGNALBOX_* variable as a config override: start it without them.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SIGNALBOX_')));
    demo = spawn(BIN, ['demo', '--port', '0', '--speed', String(SPEED), '--seed', '7', '--duration', DEMO_DURATION], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let partial = '';
    demo.stdout.on('data', (d) => {
      const text = d.toString();
      demoOutput = (demoOutput + text).slice(-20_000);
      partial += text;
      const lines = partial.split('\n');
      partial = lines.pop();
      for (const line of lines) demoLines.push({ atMs: Date.now(), line });
    });
    demo.stderr.on('data', (d) => {
      demoOutput = (demoOutput + d.toString()).slice(-20_000);
    });
    const line = await until('the console: line', 60_000, () => demoLines.find((l) => l.line.startsWith('console: ')), 100);
    base = line.line.slice('console: '.length).trim();
    const url = new URL(base);
    assertEq(url.hostname, '127.0.0.1', 'the console listens on loopback');
    consolePort = Number(url.port);
    assert(consolePort > 0, `a console port in ${base}`);
    await until('/readyz', 30_000, async () => (await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2000) })).status === 200, 200);
  });

  await step('the demo\'s traffic reaches the overview API: five services with rates', async () => {
    await until('every demo service with a rate', 90_000, async () => {
      const o = await apiGet('/api/overview?since=15m');
      const missing = SERVICES.filter((n) => !(o.services.find((s) => s.name === n)?.rate_rps > 0));
      return missing.length ? { done: false, missing } : o;
    }, 1000);
  });

  let page;
  await step('launch Chromium', async () => {
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
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) pageProblems.push(`console: ${m.text()}`);
    });
  });

  const row = (svc) => `[data-testid=overview-row][data-service="${svc}"]`;
  await step('overview: the five demo services, each with a request rate, errors and p99', async () => {
    const t0 = Date.now();
    await page.goto(`${base}/`);
    await waitVisible(page, '[data-testid=overview-table]', 30_000);
    measured.push(`overview visible after navigation ${Date.now() - t0} ms`);
    const fcp = await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1);
    measured.unshift(`first contentful paint ${Math.round(fcp)} ms`);
    assert(fcp > 0 && fcp < 10_000, `first contentful paint at ${fcp} ms`);
    for (const s of SERVICES) await waitVisible(page, row(s), 30_000);
    // The rows refresh every 10 s: wait until each shows a rate.
    await page.waitForFunction(
      (names) =>
        names.every((n) => {
          const r = document.querySelector(`[data-testid=overview-row][data-service="${n}"] [data-testid=overview-rate]`);
          return r && /\/s$/.test(r.textContent.trim()) && !r.textContent.includes('–');
        }),
      SERVICES,
      { timeout: 30_000 },
    );
    for (const s of SERVICES) {
      assert(/\d/.test(await page.textContent(`${row(s)} [data-testid=overview-p99]`)), `${s} has a p99`);
      assert(/%|\d/.test(await page.textContent(`${row(s)} [data-testid=overview-errors]`)), `${s} has an error rate`);
    }
    await shot(page, 'demo-01-overview.png');
  });

  const edgeSel = (id) => `[data-testid=map-edge][data-edge="${id}"]`;
  await step('service map: the demo\'s four edges, with health, rates and error %', async () => {
    await timed('switch to the map', page, () => page.click('[data-testid=nav-map]'), '[data-testid=map-svg]');
    await page.waitForURL((u) => u.pathname === '/map');
    for (const s of SERVICES) await waitVisible(page, `[data-testid=map-node][data-node="${s}"]`, 30_000);
    // An edge is attached, not necessarily "visible": a straight horizontal path has an empty
    // bounding box. Its label is visible.
    for (const e of EDGES) await page.locator(`${edgeSel(e)}[data-health]`).first().waitFor({ state: 'attached', timeout: 30_000 });
    for (const e of EDGES) await waitVisible(page, `[data-testid=map-edge-label][data-edge="${e}"]`);
    for (const e of EDGES) assert(/\/s/.test(await page.textContent(`[data-testid=map-edge-label][data-edge="${e}"]`)), `edge ${e} has a rate label`);
    await shot(page, 'demo-02-map.png');
  });

  // The demo's faults come at fixed demo seconds divided by the speed; wait for an alert that
  // names a service on the Alerts page. An error alert (its service has failing traces) is
  // preferred; another one is taken when none has come 60 s after the first.
  let alert;
  await step('an alert fires and the Alerts page shows it with a link to its service', async () => {
    await timed('switch to the alerts', page, () => page.click('[data-testid=nav-alerts]'), '[data-testid=alerts-rules-panel]');
    let firstSeen = 0;
    alert = await until('a firing alert with a service link', 150_000, async () => {
      const rows = await page.$$eval('[data-testid=alert-row][data-state=firing]', (els) =>
        els
          .map((e) => ({ name: e.dataset.alertname, href: e.querySelector('[data-testid=alert-service-link]')?.getAttribute('href') || '', service: e.querySelector('[data-testid=alert-service-link]')?.textContent || '' }))
          .filter((a) => a.href),
      );
      if (!rows.length) return { done: false };
      firstSeen ||= Date.now();
      const errors = rows.find((a) => /ErrorRate|CircuitOpen/.test(a.name) && ['orders', 'payments', 'web-frontend'].includes(a.service));
      if (errors) return errors;
      return Date.now() - firstSeen > 60_000 ? rows[0] : { done: false, rows };
    }, 1000);
    log(`     alert ${alert.name} for ${alert.service}`);
    assert(SERVICES.includes(alert.service), `the alert's service ${alert.service} is a demo service`);
    // The demo narrates it too (`alert firing: Name{service=x} -> URL`).
    await until('the demo printing the alert', 30_000, () => demoLines.find((l) => l.line.includes(`alert firing: ${alert.name}`) && l.line.includes(`/services/${alert.service}`)), 500);
    await shot(page, 'demo-03-alerts.png');
  });

  let alertWindow;
  await step('the alert\'s link opens its service page at the alert\'s window', async () => {
    await page.click(`[data-testid=alert-row][data-state=firing][data-alertname="${alert.name}"] [data-testid=alert-service-link] >> nth=0`).catch(async () => page.goto(base + alert.href));
    await page.waitForURL((u) => u.pathname === `/services/${alert.service}`, { timeout: WAIT_MS });
    const u = new URL(page.url());
    alertWindow = { start: Number(u.searchParams.get('start')), end: Number(u.searchParams.get('end')) };
    assert(alertWindow.start > 0 && alertWindow.end > alertWindow.start, `the service page has the alert's window: ${page.url()}`);
    assert(alertWindow.end - alertWindow.start >= 300_000, 'the window starts 5 minutes before the alert');
    await page.waitForFunction((s) => document.querySelector('[data-testid=service-title]')?.textContent.trim() === s, alert.service, { timeout: WAIT_MS });
    await page.waitForFunction(() => /\/s$/.test(document.querySelector('[data-testid=service-red-rate]')?.textContent || ''), null, { timeout: 30_000 });
    await page.waitForFunction(() => Number(document.querySelector('[data-testid=service-chart-rate]')?.dataset.series || 0) >= 1, null, { timeout: 30_000 });
    await waitVisible(page, '[data-testid=service-alert-row]', 30_000);
    await shot(page, 'demo-04-service.png');
  });

  await step('the service page\'s logs link shows the log lines of the window', async () => {
    const href = await page.getAttribute('[data-testid=service-logs-link]', 'href');
    const u = new URL(href, base);
    assertEq(u.pathname, '/logs', 'the logs link');
    assertEq(Number(u.searchParams.get('start')), alertWindow.start, 'the logs start with the window');
    assert(u.searchParams.get('query').includes(`service:${alert.service}`), `the logs of ${alert.service}: ${href}`);
    await timed('service page -> logs', page, () => page.click('[data-testid=service-logs-link]'), '[data-testid=log-line]');
    assert((await page.$$('[data-testid=log-line]')).length >= 1, 'log lines');
    await shot(page, 'demo-05-logs.png');
  });

  let traceId = '';
  await step('a failing request\'s trace: an error log line\'s trace link, else the service page\'s failing traces', async () => {
    // A trace that crossed at least two demo services (a call refused by an open circuit at
    // the gateway has only the caller's): up to five candidates from each source.
    const crossesServices = async (id) => {
      await page.waitForURL((u) => u.pathname === `/traces/${id}`);
      const ok = await page
        .locator('[data-testid=span-row]')
        .first()
        .waitFor({ state: 'visible', timeout: WAIT_MS })
        .then(() => true)
        .catch(() => false); // not kept by sampling
      if (!ok) return false;
      const services = await page.$$eval('[data-testid=span-row]', (els) => [...new Set(els.map((e) => e.dataset.service))]);
      return services.filter((x) => SERVICES.includes(x)).length >= 2;
    };
    // An error line of the service in the same window, expanded, leads to its trace.
    const errorsUrl = new URL(page.url());
    errorsUrl.searchParams.set('query', `${errorsUrl.searchParams.get('query')} level:error`);
    for (let i = 0; i < 5 && !traceId; i++) {
      await page.goto(errorsUrl.toString());
      const line = page.locator('[data-testid=log-line]').nth(i);
      if (!(await line.waitFor({ state: 'visible', timeout: i ? 3000 : WAIT_MS }).then(() => true).catch(() => false))) break;
      await line.click();
      const link = page.locator('[data-testid=log-trace-link]').first();
      if (!(await link.waitFor({ state: 'visible', timeout: 5000 }).then(() => true).catch(() => false))) continue;
      const id = (await link.textContent()).trim();
      await link.click();
      if (await crossesServices(id)) {
        traceId = id;
        log(`     trace ${traceId} from error log line ${i + 1}`);
      }
    }
    for (let i = 0; i < 5 && !traceId; i++) {
      await page.goto(`${base}/services/${alert.service}?start=${alertWindow.start}&end=${alertWindow.end}`);
      await waitVisible(page, '[data-testid=service-failing-row] a', 30_000);
      const a = page.locator('[data-testid=service-failing-row] a').nth(i);
      if (!(await a.count())) break;
      const id = (await a.getAttribute('href')).split('/traces/')[1].split('?')[0];
      await a.click();
      if (await crossesServices(id)) {
        traceId = id;
        log(`     trace ${traceId} from the service page's failing traces (row ${i + 1})`);
      }
    }
    assert(traceId, `no failing trace of ${alert.service} across two demo services among five error lines and five failing traces`);
  });

  let edgeSpan = null;
  await step('the waterfall: the gateway\'s spans and the services\' own OTel SDK spans, an error marked', async () => {
    await waitVisible(page, '[data-testid=span-row]', 30_000);
    const spans = await page.$$eval('[data-testid=span-row]', (els) => els.map((e) => ({ id: e.dataset.spanId, service: e.dataset.service, depth: Number(e.dataset.depth), error: e.dataset.error === 'true' })));
    const services = new Set(spans.map((s) => s.service));
    const demoServices = SERVICES.filter((s) => services.has(s));
    const gatewaySpans = spans.filter((s) => !SERVICES.includes(s.service));
    assert(gatewaySpans.length >= 1, `spans from the gateway: ${[...services].join(', ')}`);
    assert(demoServices.length >= 2, `spans from at least two demo services (their SDKs): ${[...services].join(', ')}`);
    assert(spans.some((s) => s.error), 'an error span in a failing trace');
    // A demo service's span called by another demo service through the gateway: its detail
    // has a map-edge link (a span under its own service's span has none).
    const candidates = spans.filter((s) => s.depth > 0 && SERVICES.includes(s.service) && s.service !== 'web-frontend').slice(0, 12);
    assert(candidates.length, 'a span of a called demo service');
    for (const c of candidates) {
      // A click toggles the detail; the span the log line named is open already.
      if (!(await page.$(`[data-testid=span-detail][data-span-id="${c.id}"]`))) await page.click(`[data-testid=span-row][data-span-id="${c.id}"]`);
      await waitVisible(page, `[data-testid=span-detail][data-span-id="${c.id}"]`);
      if (await page.$(`[data-testid=span-detail][data-span-id="${c.id}"] [data-testid=span-map-edge]`)) {
        edgeSpan = c;
        break;
      }
    }
    assert(edgeSpan, `no span of ${candidates.map((c) => c.service).join(', ')} has a map-edge link`);
    // The service's own span, recorded by its OpenTelemetry SDK: the detail names its scope.
    const scope = (await page.textContent(`[data-testid=span-detail][data-span-id="${edgeSpan.id}"] [data-testid=span-scope]`).catch(() => '')) || '';
    assert(scope.trim(), `the ${edgeSpan.service} span has the SDK's instrumentation scope`);
    log(`     ${spans.length} spans from ${[...services].join(', ')}; ${edgeSpan.service} span (scope ${scope.trim()})`);
    await shot(page, 'demo-06-trace.png');
  });

  await step('the span\'s map-edge link opens the edge on the service map with its side panel', async () => {
    const link = `[data-testid=span-detail][data-span-id="${edgeSpan.id}"] [data-testid=span-map-edge]`;
    await waitVisible(page, link);
    const href = await page.getAttribute(link, 'href');
    const u = new URL(href, base);
    const edge = u.searchParams.get('edge');
    log(`     edge ${edge}`);
    assert(EDGES.includes(edge), `the span's edge ${edge} is one of the demo's (${EDGES.join(', ')}), seen through the gateway`);
    const t0 = Date.now();
    await page.click(link);
    await page.waitForURL((x) => x.pathname === '/map' && x.searchParams.get('edge') === edge);
    const [from, to] = edge.split('>');
    await page.waitForFunction((t) => document.querySelector('[data-testid=map-side-title]')?.textContent.trim() === t, `${from} → ${to}`, { timeout: 30_000 });
    measured.push(`trace -> map edge panel ${Date.now() - t0} ms`);
    await page.locator(edgeSel(edge)).first().waitFor({ state: 'attached', timeout: WAIT_MS });
    await page.waitForFunction(() => /\/s$/.test(document.querySelector('[data-testid=map-edge-rate]')?.textContent.trim() || ''), null, { timeout: 30_000 });
    await shot(page, 'demo-07-map-edge.png');
  });

  await step('trace model: a span\'s map edge is seen through the gateway, as the map draws it', async () => {
    const got = await page.evaluate(async () => {
      const { gatewayServices, mapEdge } = await import('/js/trace-model.js');
      const mk = (service, attributes, parent) => ({ span: { service, attributes }, parent });
      const web = mk('web', {}, null);
      const webCall = mk('web', {}, web);
      const gwServer = mk('gw', { 'signalbox.upstream.service': 'orders' }, webCall);
      const gwClient = mk('gw', {}, gwServer);
      const orders = mk('orders', {}, gwClient);
      const ordersCall = mk('orders', {}, orders);
      const fromOutside = mk('gw', { 'signalbox.upstream.service': 'web' }, null);
      const webIn = mk('web', {}, fromOutside);
      const all = { web, webCall, gwServer, gwClient, orders, ordersCall, fromOutside, webIn };
      const gateways = gatewayServices(Object.values(all));
      const edge = (n) => (mapEdge(n, gateways) ? `${mapEdge(n, gateways).from}>${mapEdge(n, gateways).to}` : null);
      return Object.fromEntries(Object.entries(all).map(([k, n]) => [k, edge(n)]));
    });
    assertEq(JSON.stringify(got), JSON.stringify({ web: null, webCall: null, gwServer: 'web>orders', gwClient: null, orders: 'web>orders', ordersCall: null, fromOutside: 'gw>web', webIn: 'gw>web' }), 'edges');
  });

  await step('rollouts: the bad canary of web-frontend is rolled back by the node, with the numbers', async () => {
    await page.goto(`${base}/rollouts`);
    await page.locator('[data-testid=rollout-row][data-service=web-frontend]').first().waitFor({ state: 'visible', timeout: WAIT_MS });
    await page.goto(`${base}/rollouts/web-frontend`);
    // The demo starts it a few seconds in; the node judges it every interval (8 s here).
    await page.waitForSelector('[data-testid=rollout-panel] [data-testid=rollout-phase][data-phase=rolled_back]', { timeout: 90_000 });
    const reason = await page.textContent('[data-testid=rollout-last-reason]');
    assert(/error rate .* above the limit 1\.00%/.test(reason), `the rollback's reason: ${reason}`);
    const weights = await page.getAttribute('[data-testid=rollout-panel] [data-testid=rollout-weights]', 'data-weights');
    assertEq(weights, '2.3.0=100', 'weights after the rollback');
    await page.screenshot({ path: path.join(SHOTS, 'demo-rollout.png'), fullPage: true });
  });

  await step('no script errors or CSP violations in the pages', async () => {
    assert(pageProblems.length === 0, pageProblems.join('\n'));
  });

  console.log(`      console on the demo's data: ${measured.join('; ')}`);

  await step('Ctrl-C: the demo exits 0 within 60 s and its console port is closed', async () => {
    await browser.close().catch(() => {});
    browser = null;
    const exited = new Promise((r) => demo.once('exit', (code, signal) => r({ code, signal })));
    const t0 = Date.now();
    demo.kill('SIGINT');
    const res = await Promise.race([exited, sleep(60_000).then(() => null)]);
    assert(res, 'the demo did not exit within 60 s of SIGINT');
    log(`     exited ${JSON.stringify(res)} after ${Date.now() - t0} ms`);
    assertEq(res.code, 0, 'exit code');
    assert(demoLines.some((l) => l.line.includes('stopped:')), 'the demo said it stopped');
    assertEq(await portOpen(consolePort), false, `console port ${consolePort} still accepts connections`);
  });
}

async function cleanup() {
  if (browser) {
    const b = browser;
    browser = null;
    await Promise.race([b.close().catch(() => {}), sleep(5000)]);
  }
  if (demoAlive()) {
    const d = demo;
    const exited = new Promise((r) => d.once('exit', r));
    d.kill('SIGINT');
    const t = setTimeout(() => d.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(t);
  }
}

const watchdog = setTimeout(async () => {
  log(`FAIL the test did not finish within ${TOTAL_MS / 1000} s`);
  failed++;
  if (demoOutput) console.log('--- signalbox demo output (tail) ---\n' + demoOutput.slice(-4000));
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
  if (demoOutput) console.log('--- signalbox demo output (tail) ---\n' + demoOutput.slice(-4000));
} finally {
  await cleanup();
  clearTimeout(watchdog);
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
