// The Logs page steps of the console's browser test (console.test.mjs runs them after the
// trace steps, with its helpers and the seeded slow trace).

/** Posts NDJSON log lines (objects) to /api/logs. */
async function postLogs(base, secret, lines, assert) {
  const r = await fetch(`${base}/api/logs`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${secret}`, 'Content-Type': 'application/x-ndjson' },
    body: lines.map((l) => JSON.stringify(l)).join('\n') + '\n',
    signal: AbortSignal.timeout(20_000),
  });
  const text = await r.text();
  assert(r.status >= 200 && r.status < 300, `log ingest status ${r.status} (${text})`);
}

/**
 * The Logs page: seeded NDJSON lines (payments and checkout over the last 20 minutes, three
 * with the slow trace's id next to its spans, one non-ASCII), searched from the query bar,
 * the histogram, highlights, an expanded line's fields and context, the trace link both ways,
 * drag-to-zoom on the histogram, errors, the empty state, the live tail and 10,000 lines.
 */
export async function logsSteps({ page, base, secret, traceIds, traceNow }, { step, assert, assertEq, waitVisible, waitValue, waitCount, waitText, waitContains, shot, WAIT_MS }) {
  const line = '[data-testid=log-line]';
  const now = Date.now();
  const iso = (ms) => new Date(ms).toISOString();
  const traceAt = traceNow - 9000 + 140; // inside the slow trace's payments span
  await step('logs: seed lines as NDJSON', async () => {
    const lines = [];
    for (let i = 0; i < 24; i++) {
      const svc = i % 2 ? 'checkout' : 'payments';
      lines.push({ timestamp: iso(now - 60_000 - i * 45_000), severity: i % 6 === 0 ? 'WARN' : 'INFO', body: `${svc} handled request ${i} in ${10 + i} ms`, service: svc, instance: `${svc}-1`, attributes: { route: '/pay', n: i } });
    }
    // Payments lines that say "declined": four, two of them in the slow trace (which has three).
    lines.push({ timestamp: iso(now - 600_000), severity: 'WARN', body: 'card declined by issuer, retrying', service: 'payments', instance: 'payments-1', attributes: { order_id: 'o-41' } });
    lines.push({ timestamp: iso(traceAt - 2), severity: 'INFO', body: 'charging card for order o-42', service: 'payments', instance: 'payments-1', trace_id: traceIds.slow, span_id: '1000000000000008', attributes: { order_id: 'o-42' } });
    lines.push({ timestamp: iso(traceAt), severity: 'ERROR', body: 'payment declined: card expired (declined twice)', service: 'payments', instance: 'payments-1', host: 'node-7', trace_id: traceIds.slow, span_id: '1000000000000008', attributes: { order_id: 'o-42', http: { status: 502 }, 'payment.provider': 'acme' } });
    lines.push({ timestamp: iso(traceAt + 3), severity: 'INFO', body: 'order o-42 marked as declined', service: 'payments', instance: 'payments-1', trace_id: traceIds.slow, span_id: '1000000000000008', attributes: { order_id: 'o-42' } });
    lines.push({ timestamp: iso(now - 30_000), severity: 'ERROR', body: 'Zahlung abgelehnt – declined für Kunde', service: 'payments', instance: 'payments-2', attributes: { order_id: 'o-43' } });
    await postLogs(base, secret, lines, assert);
  });

  await step('logs: the query bar suggests fields and values, Enter searches, the histogram has bars, matches are highlighted', async () => {
    await page.click('[data-testid=nav-logs]');
    // The range the other pages showed last carries over into the URL (app.js shareRange).
    await page.waitForURL((u) => u.pathname === '/logs' && u.searchParams.has('since'));
    await waitVisible(page, line); // the last hour, every line
    await page.fill('[data-testid=logs-query]', '');
    await page.type('[data-testid=logs-query]', 'serv');
    await waitVisible(page, '[data-testid=logs-suggestion][data-value="service:"]');
    await page.keyboard.press('Tab');
    await waitValue(page, '[data-testid=logs-query]', 'service:');
    await page.type('[data-testid=logs-query]', 'pay');
    await waitVisible(page, '[data-testid=logs-suggestion][data-value="payments"]');
    await page.click('[data-testid=logs-suggestion][data-value="payments"]');
    await waitValue(page, '[data-testid=logs-query]', 'service:payments ');
    await page.type('[data-testid=logs-query]', 'declined');
    await page.keyboard.press('Enter');
    await page.waitForURL((u) => u.pathname === '/logs' && u.searchParams.get('query') === 'service:payments declined');
    await waitCount(page, line, 4);
    const ns = await page.$$eval(line, (els) => els.map((e) => BigInt(e.dataset.ns)));
    assert(ns.every((x, i) => i === 0 || ns[i - 1] >= x), 'newest first');
    await waitText(page, '[data-testid=logs-count]', '4 lines');
    const bars = await page.$$eval('[data-testid=histogram-bar]', (els) => els.reduce((a, e) => a + Number(e.dataset.count), 0));
    assertEq(bars, 4, 'lines counted by the histogram bars');
    await waitText(page, '[data-testid=logs-hist-total]', '4 matches');
    // Highlights: ASCII bodies get marks at the matched words; the non-ASCII one none.
    const marks = await page.$$eval(line, (els) => els.map((e) => [e.querySelector('[data-testid=log-body]').textContent, Array.from(e.querySelectorAll('[data-testid=log-highlight]'), (m) => m.textContent)]));
    for (const [body, m] of marks) {
      if (/^[\x00-\x7f]*$/.test(body)) assert(m.length >= 1 && m.every((x) => x.toLowerCase() === 'declined'), `highlights of ${body}: ${JSON.stringify(m)}`);
      else assertEq(m.length, 0, `highlights of the non-ASCII ${body}`);
    }
    const twice = marks.find(([b]) => b.startsWith('payment declined'));
    assertEq(twice[1].length, 2, 'both words of the expired-card line');
    assertEq(await page.getAttribute(`${line}:has-text("card expired")`, 'data-severity'), 'error', 'severity of the error line');
    await shot(page, '12-logs-search.png');
  });

  await step('logs: opening a line shows its fields, context and the trace link, which opens the trace', async () => {
    const ns = await page.getAttribute(`${line}:has-text("card expired")`, 'data-ns');
    const target = `${line}[data-ns="${ns}"]`;
    await page.click(`${target} .log-row`);
    await page.waitForURL((u) => u.pathname === '/logs' && !!u.searchParams.get('line'));
    const detail = `${target} [data-testid=log-detail]`;
    await waitVisible(page, detail);
    await waitText(page, `${detail} [data-testid=log-field-service]`, 'payments');
    await waitText(page, `${detail} [data-testid=log-field-instance]`, 'payments-1');
    await waitContains(page, `${detail} [data-testid=log-attributes] tr[data-key=order_id]`, 'o-42');
    await waitContains(page, `${detail} [data-testid=log-attributes] tr[data-key="http.status"]`, '502');
    await waitContains(page, `${detail} [data-testid=log-resource] tr[data-key="host.name"]`, 'node-7');
    // Context: the lines of payments-1 around it, this one marked.
    await waitContains(page, `${detail} [data-testid=log-context-self]`, 'card expired');
    await waitContains(page, `${detail} [data-testid=log-context]`, 'charging card for order o-42');
    await waitContains(page, `${detail} [data-testid=log-context]`, 'order o-42 marked as declined');
    // The line's trace, with its span selected (links.js traceUrl).
    assertEq(await page.getAttribute(`${detail} [data-testid=log-trace-link]`, 'href'), `/traces/${traceIds.slow}?span=1000000000000008`, 'trace link');
    await shot(page, '13-logs-line.png');
    // A pasted link reopens the same view with the line open.
    const url = page.url();
    await page.goto(url);
    await waitVisible(page, detail);
    await page.click(`${detail} [data-testid=log-trace-link]`);
    await page.waitForURL(`${base}/traces/${traceIds.slow}?span=1000000000000008`);
    await waitText(page, '[data-testid=trace-title]', 'frontend: GET /checkout');
    await waitVisible(page, '[data-testid=span-detail][data-span-id="1000000000000008"]');
  });

  await step('links: a span leads to its logs (trace id and span id) and to its service-map edge', async () => {
    const detail = '[data-testid=span-detail][data-span-id="1000000000000008"]';
    const edgeHref = await page.getAttribute(`${detail} [data-testid=span-map-edge]`, 'href');
    const edge = new URL(edgeHref, base);
    assertEq(edge.pathname, '/map', 'the map link');
    const [from, to] = (edge.searchParams.get('edge') || '').split('>');
    assertEq(to, 'payments', 'the edge ends at the span\'s service');
    assert(from && from !== 'payments', `the edge starts at the parent's service: ${edgeHref}`);
    assert(edge.searchParams.get('start') && edge.searchParams.get('end'), `the edge link has the span's window: ${edgeHref}`);
    await page.click(`${detail} [data-testid=span-logs]`);
    await page.waitForURL((u) => u.pathname === '/logs' && u.searchParams.get('query') === `trace_id:${traceIds.slow} span_id:1000000000000008`);
    await waitCount(page, line, 3);
    await page.goBack();
    await page.waitForURL(`${base}/traces/${traceIds.slow}?span=1000000000000008`);
    await waitText(page, '[data-testid=trace-title]', 'frontend: GET /checkout');
  });

  await step('links: a trace leads to the RED metrics of its services around its time', async () => {
    const href = await page.getAttribute('[data-testid=trace-metrics]', 'href');
    const u = new URL(href, base);
    assertEq(u.pathname, '/metrics-explorer', 'the metrics link');
    const q = u.searchParams.get('query');
    assert(q.includes('signalbox_gateway_requests_total') && q.includes('payments') && q.includes('frontend'), `the query covers the trace's services: ${q}`);
    const start = Number(u.searchParams.get('start'));
    const end = Number(u.searchParams.get('end'));
    assert(start < traceNow - 9000 && end > traceNow - 9000 && end - start <= 11 * 60e3 + 20e3, `the window surrounds the trace: ${start}..${end}`);
  });

  await step('logs: "Logs of this trace" in the trace view searches its trace id', async () => {
    await page.click('[data-testid=trace-logs]');
    await page.waitForURL((u) => u.pathname === '/logs' && u.searchParams.get('query') === `trace_id:${traceIds.slow}`);
    await waitCount(page, line, 3);
    await waitVisible(page, '[data-testid=logs-range-chip]');
  });

  await step('logs: dragging across the histogram narrows the time range and searches again', async () => {
    await page.goto(`${base}/logs?query=service%3Acheckout&since=1h`);
    await waitCount(page, line, 12);
    const box = await page.locator('[data-testid=histogram-drag]').boundingBox();
    const y = box.y + box.height / 2;
    await page.mouse.move(box.x + box.width * 0.85, y);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.92, y, { steps: 4 });
    await page.mouse.move(box.x + box.width * 0.99, y, { steps: 4 });
    await page.mouse.up();
    await page.waitForURL((u) => u.searchParams.has('start') && u.searchParams.has('end'));
    const u = new URL(page.url());
    const [s, e] = [Number(u.searchParams.get('start')), Number(u.searchParams.get('end'))];
    assert(s < e && s > now - 3600_000 && e <= Date.now() + 60_000, `range ${s}..${e}`);
    await waitVisible(page, '[data-testid=logs-range-chip]');
    await page.waitForFunction(() => !document.querySelector('[data-testid=logs-loading]'));
    const ms = await page.$$eval(line, (els) => els.map((el) => Number(el.dataset.ns.slice(0, -6))));
    assert(ms.length > 0 && ms.length < 12, `lines in the narrower range: ${ms.length}`);
    assert(ms.every((m) => m >= s - 1 && m <= e + 1), `every line in ${s}..${e}: ${ms}`);
    await shot(page, '14-logs-range.png');
    await page.click('[data-testid=logs-range-clear]');
    await waitCount(page, line, 12);
  });

  await step('logs: a bad query names the error; no match says what to do', async () => {
    await page.goto(`${base}/logs?query=${encodeURIComponent('level:>=loud (')}`);
    await waitVisible(page, '[data-testid=logs-error]');
    const text = await page.textContent('[data-testid=logs-error]');
    assert(text.startsWith('query:') && text.length > 12, `error text: ${text}`);
    await shot(page, '17-logs-error.png');
    await page.goto(`${base}/logs?query=nosuchwordanywhere`);
    await waitContains(page, '[data-testid=logs-empty]', 'No log lines match');
    await waitContains(page, '[data-testid=logs-empty]', 'Widen the time range');
    await shot(page, '18-logs-empty.png');
  });

  await step('logs: the live tail prepends new matching lines', async () => {
    await page.goto(`${base}/logs?query=${encodeURIComponent('service:tailer tail')}`);
    await waitVisible(page, '[data-testid=logs-empty]');
    await page.click('[data-testid=logs-live]');
    await page.waitForFunction(() => document.querySelector('[data-testid=logs-live-state]')?.dataset.state === 'live', null, { timeout: WAIT_MS });
    await postLogs(base, secret, [
      { timestamp: iso(Date.now()), severity: 'INFO', body: 'tail one', service: 'tailer', instance: 't-1' },
      { timestamp: iso(Date.now()), severity: 'INFO', body: 'not for this tail', service: 'other', instance: 'o-1' },
    ], assert);
    await waitCount(page, line, 1);
    await postLogs(base, secret, [{ timestamp: iso(Date.now()), severity: 'ERROR', body: 'tail two', service: 'tailer', instance: 't-1' }], assert);
    await waitCount(page, line, 2);
    await waitText(page, `${line}:first-child [data-testid=log-body]`, 'tail two');
    await waitText(page, `${line}:first-child [data-testid=log-highlight]`, 'tail');
    // The histogram counts them too (they fall in its last bucket).
    await waitText(page, '[data-testid=logs-hist-total]', '2 matches');
    const bars = await page.$$eval('[data-testid=histogram-bar]', (els) => els.reduce((a, e) => a + Number(e.dataset.count), 0));
    assertEq(bars, 2, 'tailed lines in the histogram');
    await shot(page, '16-logs-live.png');
    await page.click('[data-testid=logs-live]');
    assertEq(await page.getAttribute('[data-testid=logs-live]', 'aria-pressed'), 'false', 'live off');
  });

  await step('logs: 10,000 lines render in chunks and stay responsive', async () => {
    const t = Date.now();
    const bulk = Array.from({ length: 10_000 }, (_, i) => ({ timestamp: iso(t - 120_000 + i * 10), severity: i % 50 ? 'INFO' : 'ERROR', body: `bulk line ${i} user=u-${i % 97} took ${i % 300} ms`, service: 'bulk', instance: 'bulk-1' }));
    await postLogs(base, secret, bulk, assert);
    await page.goto(`${base}/logs?query=service%3Abulk&since=15m&limit=10000`);
    await waitText(page, '[data-testid=logs-count]', '10,000 lines (the newest; narrow the range for more)');
    const rows = await page.$$eval(line, (els) => els.length);
    assert(rows <= 1000, `rows in the DOM at first: ${rows}`);
    // Scrolling to the end renders more; a click still answers quickly.
    const t0 = Date.now();
    await page.evaluate(() => {
      const m = document.getElementById('main');
      m.scrollTop = m.scrollHeight;
    });
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid=log-line]').length > n, rows, { timeout: WAIT_MS });
    await page.click(`${line}:first-child .log-row`);
    await waitVisible(page, `${line}:first-child [data-testid=log-detail]`);
    assert(Date.now() - t0 < 3000, `scroll and open took ${Date.now() - t0} ms`);
    await shot(page, '15-logs-many.png');
  });
}
