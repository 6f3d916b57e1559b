// Browser steps for what every page shares: the tab's one live stream, the links between
// signals (alert -> service page and metrics, a chart's selected window -> logs and
// traces), the theme and the time zone in the header, and a 500-span trace's waterfall
// staying responsive. Run by console.test.mjs after the metrics steps (the PaymentsErrors
// alert is firing by then).

import { randomBytes } from 'node:crypto';

/** Long tasks (> 50 ms of main-thread work) recorded from the page's start, in window.__longTasks. */
function recordLongTasks() {
  window.__longTasks = [];
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longTasks.push(Math.round(e.duration));
    }).observe({ type: 'longtask', buffered: true });
  } catch {
    // No long-task timing in this browser: the list stays empty.
  }
}

export async function platformSteps({ page, base, secret, liveRequests, traceIds, traceNow }, { step, assert, assertEq, waitVisible, waitCount, waitText, waitContains, shot, WAIT_MS }) {
  const measured = {};

  await step('live: one shared stream per tab carries the registry and the alerts; the nav counts firing alerts', async () => {
    await page.goto(`${base}/alerts`);
    await page.waitForFunction(() => document.documentElement.dataset.live === 'live', null, { timeout: WAIT_MS });
    assertEq(await page.evaluate(() => document.documentElement.dataset.liveTopics), 'alerts,registry', 'topics of the one connection');
    assert(liveRequests.some((u) => u.includes('/api/live?topics=')), `the console opened /api/live: ${liveRequests.join(' ')}`);
    const old = liveRequests.filter((u) => u.includes('/api/registry/events'));
    assertEq(old.length, 0, 'connections to the per-page registry stream');
    // The PaymentsErrors alert fires on the node's own metrics: its count is in the navigation.
    await waitText(page, '[data-testid=nav-alerts-count]', '1');
  });

  await step('live: a stream that is down says so in the header and recovers by itself', async () => {
    const refuse = (route) => route.fulfill({ status: 503, contentType: 'application/json', body: '{"error":"down for the test"}' });
    await page.route(/\/api\/live\?/, refuse);
    try {
      await page.goto(`${base}/alerts`);
      await waitText(page, '[data-testid=stream-state]', 'Live updates offline — retrying');
    } finally {
      await page.unroute(/\/api\/live\?/, refuse);
    }
    await page.waitForFunction(() => document.documentElement.dataset.live === 'live', null, { timeout: WAIT_MS });
    await page.waitForSelector('[data-testid=stream-state]', { state: 'hidden', timeout: WAIT_MS });
    await waitText(page, '[data-testid=nav-alerts-count]', '1');
  });

  await step('links: an alert leads to its service page and RED metrics at the alert\'s window', async () => {
    const r = await fetch(`${base}/prometheus/api/v1/alerts`, { headers: { Authorization: `Bearer ${secret}` }, signal: AbortSignal.timeout(5000) });
    const activeAt = (await r.json()).data.alerts.find((a) => a.labels.alertname === 'PaymentsErrors').activeAt;
    const from = Date.parse(activeAt) - 300_000;
    await waitVisible(page, '[data-testid=alert-service-link]');
    const svc = new URL(await page.getAttribute('[data-testid=alert-service-link]', 'href'), base);
    assertEq(svc.pathname, '/services/payments', 'the service page');
    assertEq(Number(svc.searchParams.get('start')), from, 'the service page opens 5 minutes before the alert');
    assert(Number(svc.searchParams.get('end')) >= Date.parse(activeAt), `the window ends after the alert started: ${svc}`);
    const m = new URL(await page.getAttribute('[data-testid=alert-metrics-link]', 'href'), base);
    assertEq(m.pathname, '/metrics-explorer', 'the metrics page');
    assert(m.searchParams.get('query').includes('service="payments"'), `the RED query of payments: ${m.searchParams.get('query')}`);
    assertEq(Number(m.searchParams.get('start')), from, 'the metrics window starts with the alert\'s');
    await page.click('[data-testid=alert-metrics-link]');
    await page.waitForURL((u) => u.pathname === '/metrics-explorer' && Number(u.searchParams.get('start')) === from);
    await waitVisible(page, '[data-testid=metrics-window]');
  });

  await step('links: dragging across a chart selects a window, in the URL, with its logs and traces one click away', async () => {
    await page.goto(`${base}/metrics-explorer?query=${encodeURIComponent('signalbox_tsdb_head_series{job="signalbox"}')}&since=15m`);
    await page.waitForFunction(() => Number(document.querySelector('[data-testid=metrics-chart]')?.dataset.series) >= 1, null, { timeout: WAIT_MS });
    const box = await page.locator('[data-testid=metrics-chart-canvas]').boundingBox();
    const y = box.y + box.height / 2;
    // The node's samples are in the last minutes of the 15: select the end of the chart.
    await page.mouse.move(box.x + box.width * 0.8, y);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.9, y, { steps: 5 });
    await page.mouse.move(box.x + box.width * 0.97, y, { steps: 5 });
    await page.mouse.up();
    await page.waitForURL((u) => u.pathname === '/metrics-explorer' && !!u.searchParams.get('start') && !!u.searchParams.get('end'));
    const url = new URL(page.url());
    const start = url.searchParams.get('start');
    const end = url.searchParams.get('end');
    assert(Number(end) - Number(start) < 15 * 60e3 && Number(end) > Number(start), `a narrower window: ${start}..${end}`);
    await page.waitForFunction(() => document.querySelector('[data-testid=metrics-window]')?.dataset.selected === '1', null, { timeout: WAIT_MS });
    await waitContains(page, '[data-testid=metrics-window-text]', 'Selected window');
    await page.waitForFunction(() => Number(document.querySelector('[data-testid=metrics-chart]')?.dataset.series) >= 1, null, { timeout: WAIT_MS });
    const traces = new URL(await page.getAttribute('[data-testid=metrics-window-traces]', 'href'), base);
    assertEq(traces.pathname, '/traces', 'the traces link');
    assertEq(`${traces.searchParams.get('start')}..${traces.searchParams.get('end')}`, `${start}..${end}`, 'the traces of the window');
    // A series toggled off in the legend is in the URL too, and survives a reload.
    await page.click('[data-testid=metrics-legend-item][data-index="0"]');
    await page.waitForURL((u) => u.searchParams.getAll('hide').length === 1);
    await page.reload();
    await page.waitForFunction(() => document.querySelector('[data-testid=metrics-legend-item][data-index="0"]')?.getAttribute('aria-pressed') === 'false', null, { timeout: WAIT_MS });
    await page.click('[data-testid=metrics-legend-item][data-index="0"]');
    await page.waitForURL((u) => u.searchParams.getAll('hide').length === 0 && u.searchParams.get('start') === start);
    await shot(page, '30-metrics-window.png');
    await page.click('[data-testid=metrics-window-logs]');
    await page.waitForURL((u) => u.pathname === '/logs' && u.searchParams.get('start') === start && u.searchParams.get('end') === end);
    await waitVisible(page, '[data-testid=logs-range-chip]');
  });

  await step('keyboard: "/" focuses the page\'s search field', async () => {
    await page.click('h1');
    await page.keyboard.press('/');
    assertEq(await page.evaluate(() => document.activeElement?.dataset.testid), 'logs-query', 'the focused field');
    await page.keyboard.press('Escape');
  });

  await step('theme: dark and light from the header, remembered, the system\'s by default', async () => {
    const bg = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    await page.emulateMedia({ colorScheme: 'light' });
    assertEq(await page.evaluate(() => document.documentElement.dataset.theme), 'light', 'the default follows the system (light)');
    const light = await bg();
    await page.selectOption('[data-testid=theme-select]', 'dark');
    await page.waitForFunction(() => document.documentElement.dataset.theme === 'dark', null, { timeout: WAIT_MS });
    const dark = await bg();
    assert(dark !== light, `the background changes with the theme (${light} -> ${dark})`);
    await page.reload();
    await waitVisible(page, '[data-testid=logs-query]');
    assertEq(await page.evaluate(() => document.documentElement.dataset.theme), 'dark', 'the theme after a reload');
    assertEq(await page.inputValue('[data-testid=theme-select]'), 'dark', 'the select shows the choice');
    await shot(page, '31-logs-dark.png');
    for (const [path, ready, name] of [
      [`/traces/${traceIds.slow}?span=1000000000000008`, '[data-testid=span-detail]', '31b-trace-dark.png'],
      ['/alerts', '[data-testid=alert-row]', '31c-alerts-dark.png'],
      ['/config', '[data-testid=config-key-link]', '31d-config-dark.png'],
    ]) {
      await page.goto(base + path);
      await waitVisible(page, ready);
      await shot(page, name);
    }
    await page.selectOption('[data-testid=theme-select]', 'system');
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.waitForFunction(() => document.documentElement.dataset.theme === 'dark', null, { timeout: WAIT_MS });
    await page.emulateMedia({ colorScheme: 'light' });
    await page.waitForFunction(() => document.documentElement.dataset.theme === 'light', null, { timeout: WAIT_MS });
  });

  await step('time zone: UTC or local from the header, for every time shown, remembered', async () => {
    await page.goto(`${base}/traces/${traceIds.slow}`);
    await waitVisible(page, '[data-testid=trace-start]');
    const startMs = traceNow - 9000;
    const hhmm = (d, utc) => `${String(utc ? d.getUTCHours() : d.getHours()).padStart(2, '0')}:${String(utc ? d.getUTCMinutes() : d.getMinutes()).padStart(2, '0')}`;
    const local = await page.textContent('[data-testid=trace-start]');
    assert(!local.includes('UTC') && local.includes(hhmm(new Date(startMs), false)), `local time: ${local}`);
    await page.selectOption('[data-testid=timezone-select]', 'utc');
    await waitContains(page, '[data-testid=trace-start]', 'UTC');
    const utc = await page.textContent('[data-testid=trace-start]');
    assert(utc.includes(hhmm(new Date(startMs), true)), `UTC: ${utc}`);
    await page.reload();
    await waitContains(page, '[data-testid=trace-start]', 'UTC');
    await page.selectOption('[data-testid=timezone-select]', 'local');
    await page.waitForFunction(() => !document.querySelector('[data-testid=trace-start]')?.textContent.includes('UTC'), null, { timeout: WAIT_MS });
  });

  await step('traces: the result order is in the URL, so a pasted link keeps it', async () => {
    await page.goto(`${base}/traces?service=frontend&lookback=1h&limit=20`);
    await waitVisible(page, '[data-testid=trace-result]');
    await page.selectOption('[data-testid=traces-sort]', 'longest');
    await page.waitForURL((u) => u.pathname === '/traces' && u.searchParams.get('sort') === 'longest');
    await page.reload();
    await waitVisible(page, '[data-testid=trace-result]');
    assertEq(await page.inputValue('[data-testid=traces-sort]'), 'longest', 'the order after a reload');
    const durations = await page.$$eval('[data-testid=trace-result]', (els) => els.map((e) => e.querySelector('[data-testid=trace-result-title]').textContent));
    assertEq(durations[0], 'frontend: GET /checkout', 'the longest trace first');
  });

  await step('console: first paint and page switches (measured, generous bounds)', async () => {
    await page.goto(`${base}/alerts`);
    await waitVisible(page, '[data-testid=alerts-rules-panel]');
    const fcp = await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1);
    assert(fcp > 0 && fcp < 5000, `first contentful paint at ${fcp} ms`);
    const switches = [];
    for (const [nav, ready] of [
      ['logs', '[data-testid=logs-query]'],
      ['traces', '[data-testid=traces-form]'],
      ['metrics', '[data-testid=metrics-query]'],
      ['config', '[data-testid=config-table], [data-testid=config-key-link]'],
      ['alerts', '[data-testid=alerts-rules-panel]'],
    ]) {
      const t0 = Date.now();
      await page.click(`[data-testid=nav-${nav}]`);
      await waitVisible(page, ready);
      switches.push(`${nav} ${Date.now() - t0} ms`);
      assert(Date.now() - t0 < 5000, `switching to ${nav} took ${Date.now() - t0} ms`);
    }
    console.log(`      first contentful paint ${Math.round(fcp)} ms; page switches: ${switches.join(', ')}`);
  });

  const bigTrace = randomBytes(16).toString('hex');
  await step('traces: seed a trace of 500 spans', async () => {
    const at = Date.now() - 5000;
    const spans = [];
    const services = ['edge', 'orders', 'payments', 'inventory', 'search'];
    for (let i = 0; i < 500; i++) {
      // Span i + 1 under span floor((i - 1) / 4) + 1: a tree four wide, five deep.
      const hex = (n) => n.toString(16).padStart(16, '0');
      spans.push({
        traceId: bigTrace,
        id: hex(i + 1),
        parentId: i === 0 ? undefined : hex(Math.floor((i - 1) / 4) + 1),
        name: `op ${i % 17}`,
        kind: 'SERVER',
        timestamp: Math.round((at + i) * 1000),
        duration: Math.max(1000, (500 - i) * 2000),
        localEndpoint: { serviceName: services[i % services.length] },
        tags: i % 97 === 5 ? { error: 'boom' } : { n: String(i) },
      });
    }
    const r = await fetch(`${base}/zipkin/api/v2/spans`, { method: 'POST', headers: { Authorization: `Bearer ${secret}`, 'Content-Type': 'application/json' }, body: JSON.stringify(spans), signal: AbortSignal.timeout(5000) });
    assertEq(r.status, 202, `zipkin ingest status (${await r.text()})`);
    const deadline = Date.now() + 20_000;
    for (;;) {
      const t = await fetch(`${base}/api/traces/${bigTrace}`, { headers: { Authorization: `Bearer ${secret}` }, signal: AbortSignal.timeout(5000) });
      if (t.status === 200 && (await t.json()).spans.length === 500) break;
      assert(Date.now() < deadline, 'the 500-span trace was not stored within 20 s');
      await new Promise((res) => setTimeout(res, 300));
    }
  });

  await step('traces: a 500-span waterfall renders and answers clicks without a long task over 2 s', async () => {
    await page.addInitScript(recordLongTasks);
    const t0 = Date.now();
    await page.goto(`${base}/traces/${bigTrace}`);
    await waitCount(page, '[data-testid=span-row]', 500);
    measured.traceRenderMs = Date.now() - t0;
    const t1 = Date.now();
    await page.evaluate(() => {
      const m = document.getElementById('main');
      m.scrollTop = m.scrollHeight;
    });
    await page.click('[data-testid=span-row][data-index="499"]');
    await waitVisible(page, '[data-testid=span-detail]');
    measured.traceClickMs = Date.now() - t1;
    const longest = await page.evaluate(() => Math.max(0, ...(window.__longTasks || [])));
    measured.traceLongestTaskMs = longest;
    assert(longest < 2000, `the longest task took ${longest} ms`);
    assert(measured.traceRenderMs < 10_000, `rendering took ${measured.traceRenderMs} ms`);
    assert(measured.traceClickMs < 3000, `scroll and open took ${measured.traceClickMs} ms`);
    await shot(page, '32-trace-500-spans.png');
    console.log(`      500 spans: load to waterfall ${measured.traceRenderMs} ms, scroll + open the last span ${measured.traceClickMs} ms, longest task ${longest} ms`);
  });

  await step('logs: 10,000 lines render without a long task over 2 s', async () => {
    const t0 = Date.now();
    await page.goto(`${base}/logs?query=service%3Abulk&since=15m&limit=10000`);
    await waitText(page, '[data-testid=logs-count]', '10,000 lines (the newest; narrow the range for more)');
    const renderMs = Date.now() - t0;
    const t1 = Date.now();
    await page.fill('[data-testid=logs-query]', 'service:bulk level:error');
    await page.keyboard.press('Enter');
    await page.waitForURL((u) => u.searchParams.get('query') === 'service:bulk level:error');
    await waitText(page, '[data-testid=logs-count]', '200 lines');
    const inputMs = Date.now() - t1;
    const longest = await page.evaluate(() => Math.max(0, ...(window.__longTasks || [])));
    assert(longest < 2000, `the longest task took ${longest} ms`);
    console.log(`      10,000 lines: load to list ${renderMs} ms, a new query answered in ${inputMs} ms, longest task ${longest} ms`);
  });
}
