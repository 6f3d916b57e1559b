// The Metrics and Alerts page steps of the console's browser test (console.test.mjs runs
// them after the Logs steps). The node stores its own metrics every second (the test's
// config sets `[metrics] self_interval = "1s"`), so real series exist without seeding.

/** GET on the Prometheus API with the token; the envelope's data. */
async function promGet(base, secret, p, assert) {
  const r = await fetch(`${base}/prometheus/api/v1/${p}`, { headers: { Authorization: `Bearer ${secret}` }, signal: AbortSignal.timeout(5000) });
  const body = await r.json();
  assert(r.status === 200 && body.status === 'success', `GET ${p}: ${r.status} ${JSON.stringify(body)}`);
  return body.data;
}

/** A query_range answer of `nSeries` series of `nPoints` points on the request's grid. */
function syntheticMatrix(url, nSeries, nPoints) {
  const u = new URL(url);
  const start = Number(u.searchParams.get('start'));
  const step = Number(u.searchParams.get('step'));
  const parts = [];
  for (let s = 0; s < nSeries; s++) {
    const vals = [];
    for (let k = 0; k < nPoints; k++) {
      const t = Math.round((start + k * step) * 1000) / 1000;
      vals.push(`[${t},"${(s * 10 + 50 * Math.sin(k / 40 + s) + (k % 7)).toFixed(3)}"]`);
    }
    parts.push(`{"metric":{"__name__":"perf_series","series":"s${s}","job":"perf"},"values":[${vals.join(',')}]}`);
  }
  return `{"status":"success","data":{"resultType":"matrix","result":[${parts.join(',')}]}}`;
}

export async function metricsSteps({ page, base, secret }, { step, assert, assertEq, waitVisible, waitValue, waitCount, waitText, waitContains, shot, WAIT_MS }) {
  const metric = 'signalbox_tsdb_head_series';
  const chart = '[data-testid=metrics-chart]';
  const legendItem = '[data-testid=metrics-legend-item]';

  await step('metrics: the node stores its own metrics and the query API answers them', async () => {
    const deadline = Date.now() + WAIT_MS;
    let result = [];
    while (Date.now() < deadline) {
      result = (await promGet(base, secret, `query?query=${metric}`, assert)).result;
      if (result.length) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    assert(result.length >= 1, `${metric} has no sample after ${WAIT_MS} ms`);
    assertEq(result[0].metric.job, 'signalbox', 'job of the own metrics');
  });

  await step('metrics: the editor completes functions, metric names, label names and values; Enter runs', async () => {
    // The range the Logs page showed last comes along through the navigation.
    const shared = await page.evaluate(() => JSON.parse(sessionStorage.getItem('signalbox.range') || 'null'));
    assert(shared && (shared.since || shared.start), `the Logs page left a shared range: ${JSON.stringify(shared)}`);
    await page.click('[data-testid=nav-metrics]');
    await page.waitForURL((u) => u.pathname === '/metrics-explorer' && (shared.start ? u.searchParams.get('start') === shared.start : !!u.searchParams.get('since')));
    assertEq(await page.getAttribute('[data-testid=nav-metrics]', 'aria-current'), 'page', 'nav-metrics active');
    if (shared.start) {
      await page.click('[data-testid=metrics-range-clear]');
    } else if (shared.since !== '1h') {
      await page.selectOption('[data-testid=metrics-range]', '1h');
    }
    await page.waitForURL((u) => u.pathname === '/metrics-explorer' && u.searchParams.get('since') === '1h');
    await waitVisible(page, '[data-testid=metrics-status] .empty');
    const q = '[data-testid=metrics-query]';
    await page.click(q);
    await page.type(q, 'rat');
    await waitVisible(page, '[data-testid=metrics-suggestion][data-value="rate"][data-kind=function]');
    await page.fill(q, '');
    await page.type(q, 'signalbox_tsdb_head_se');
    await waitVisible(page, `[data-testid=metrics-suggestion][data-value="${metric}"][data-kind=metric]`);
    await page.keyboard.press('Tab');
    await waitValue(page, q, metric);
    await page.type(q, '{');
    await waitVisible(page, '[data-testid=metrics-suggestion][data-value="job"][data-kind=label]');
    await page.click('[data-testid=metrics-suggestion][data-value="job"]');
    await waitValue(page, q, `${metric}{job`);
    await page.type(q, '=');
    await waitVisible(page, '[data-testid=metrics-suggestion][data-value="signalbox"][data-kind=value]');
    await page.click('[data-testid=metrics-suggestion][data-value="signalbox"]');
    await waitValue(page, q, `${metric}{job="signalbox"`);
    await page.type(q, '}');
    await page.keyboard.press('Enter');
    await page.waitForURL((u) => u.pathname === '/metrics-explorer' && u.searchParams.get('query') === `${metric}{job="signalbox"}` && u.searchParams.get('since') === '1h');
    await page.waitForFunction((s) => Number(document.querySelector(s)?.dataset.series) >= 1, chart, { timeout: WAIT_MS });
    await waitCount(page, legendItem, 1);
    await waitContains(page, legendItem, 'job="signalbox"');
    await waitContains(page, '[data-testid=metrics-count]', '1 series');
  });

  await step('metrics: the shared time range goes into the URL; hover shows time and values; the legend toggles series', async () => {
    await page.selectOption('[data-testid=metrics-range]', '5m');
    await page.waitForURL((u) => u.searchParams.get('since') === '5m' && u.searchParams.get('query') === `${metric}{job="signalbox"}`);
    await page.waitForFunction((s) => Number(document.querySelector(s)?.dataset.series) === 1, chart, { timeout: WAIT_MS });
    // Near the right edge, where the samples of the last seconds are.
    const box = await page.locator('[data-testid=metrics-chart-canvas]').boundingBox();
    await page.mouse.move(box.x + box.width - 16, box.y + box.height / 2);
    await waitVisible(page, '[data-testid=metrics-chart-tooltip]');
    await waitVisible(page, '[data-testid=chart-tooltip-row]');
    await waitContains(page, '[data-testid=chart-tooltip-row]', 'signalbox_tsdb_head_series');
    await page.mouse.move(box.x + box.width / 2, box.y + box.height + 60);
    await page.click(legendItem);
    assertEq(await page.getAttribute(legendItem, 'aria-pressed'), 'false', 'legend entry after a click');
    await page.waitForFunction((s) => document.querySelector(s)?.dataset.series === '0', chart, { timeout: WAIT_MS });
    await page.click(legendItem);
    await page.waitForFunction((s) => document.querySelector(s)?.dataset.series === '1', chart, { timeout: WAIT_MS });
    await page.check('[data-testid=metrics-stacked]');
    await page.waitForURL((u) => u.searchParams.get('stacked') === '1');
    await page.waitForFunction((s) => document.querySelector(s)?.dataset.series === '1', chart, { timeout: WAIT_MS });
    await shot(page, '19-metrics-graph.png', { tall: true });
    // Dragging across the last part of the chart (where the samples are) zooms in.
    const y = box.y + box.height / 2;
    await page.mouse.move(box.x + box.width * 0.8, y);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.9, y, { steps: 4 });
    await page.mouse.move(box.x + box.width * 0.97, y, { steps: 4 });
    await page.mouse.up();
    await page.waitForURL((u) => u.searchParams.get('start') && u.searchParams.get('end') && !u.searchParams.get('since'));
    const u = new URL(page.url());
    const [s, e] = [Number(u.searchParams.get('start')), Number(u.searchParams.get('end'))];
    assert(s < e && e - s < 300_000 && e <= Date.now() + 1000, `zoomed range ${s}..${e}`);
    await waitVisible(page, '[data-testid=metrics-range-chip]');
    await page.waitForFunction((sel) => document.querySelector(sel)?.dataset.series === '1', chart, { timeout: WAIT_MS });
    await page.click('[data-testid=metrics-range-clear]');
    await page.waitForURL((x) => x.searchParams.get('since') === '1h' && !x.searchParams.get('start'));
    await page.waitForFunction((sel) => document.querySelector(sel)?.dataset.series === '1', chart, { timeout: WAIT_MS });
  });

  await step('metrics: the table view shows the value of each series; back returns to the graph', async () => {
    await page.click('[data-testid=metrics-tab-table]');
    await page.waitForURL((u) => u.searchParams.get('view') === 'table');
    await waitVisible(page, '[data-testid=metrics-table-row]');
    await waitCount(page, '[data-testid=metrics-table-row]', 1);
    const value = Number(await page.textContent('[data-testid=metrics-table-value]'));
    assert(Number.isFinite(value) && value >= 1, `head series value ${value}`);
    await waitContains(page, '[data-testid=metrics-table-row]', 'instance=');
    await shot(page, '20-metrics-table.png');
    await page.click('[data-testid=metrics-tab-graph]');
    await page.waitForURL((u) => u.searchParams.get('view') === null);
    await waitVisible(page, chart);
  });

  await step("metrics: a bad query shows Prometheus's error text; back/forward restore the queries", async () => {
    const q = '[data-testid=metrics-query]';
    await page.fill(q, 'sum(rate(');
    await page.keyboard.press('Escape');
    await page.keyboard.press('Enter');
    await page.waitForURL((u) => u.searchParams.get('query') === 'sum(rate(');
    await waitVisible(page, '[data-testid=metrics-error]');
    const direct = await fetch(`${base}/prometheus/api/v1/query?query=${encodeURIComponent('sum(rate(')}`, { headers: { Authorization: `Bearer ${secret}` }, signal: AbortSignal.timeout(5000) }).then((r) => r.json());
    assertEq(direct.status, 'error', 'API status of a bad query');
    await waitText(page, '[data-testid=metrics-error]', `${direct.errorType}: ${direct.error}`);
    assert(await page.$eval(q, (el) => el.classList.contains('invalid')), 'the editor is marked invalid');
    await page.goBack();
    await waitValue(page, q, `${metric}{job="signalbox"}`);
    await page.waitForFunction((s) => Number(document.querySelector(s)?.dataset.series) >= 1, chart, { timeout: WAIT_MS });
    assertEq(await page.$('[data-testid=metrics-error]'), null, 'the error is gone');
    await page.goForward();
    await waitValue(page, q, 'sum(rate(');
    await waitVisible(page, '[data-testid=metrics-error]');
  });

  await step('metrics: 300 series of 1000 points render without freezing', async () => {
    const answer = async (route) => route.fulfill({ status: 200, contentType: 'application/json', body: syntheticMatrix(route.request().url(), 300, 1000) });
    await page.route(/\/prometheus\/api\/v1\/query_range\?/, answer);
    try {
      // 1 h at 3.6 s: 1001 steps, the answer fills 1000 of them.
      const total = await page.evaluate(
        ([sel, timeout]) =>
          new Promise((resolve, reject) => {
            const el = document.querySelector(sel);
            const t0 = performance.now();
            const obs = new MutationObserver(() => {
              if (el.dataset.series === '300') {
                obs.disconnect();
                resolve(performance.now() - t0);
              }
            });
            obs.observe(el, { attributes: true });
            setTimeout(() => {
              obs.disconnect();
              reject(new Error(`no chart of 300 series within ${timeout} ms (series ${el.dataset.series})`));
            }, timeout);
            // The last hour at 3.6 s, plain lines, through the router like a link would go.
            history.pushState(null, '', '/metrics-explorer?query=perf_series&since=1h&step=3.6');
            dispatchEvent(new PopStateEvent('popstate'));
          }),
        [chart, WAIT_MS],
      );
      await waitCount(page, legendItem, 300);
      const clientMs = Number(await page.getAttribute('.metrics-panel', 'data-client-ms'));
      const paintMs = Number(await page.getAttribute(chart, 'data-render-ms'));
      assert(clientMs < 1500, `the answer took ${clientMs} ms to become a chart`);
      assert(paintMs < 1500, `drawing took ${paintMs} ms`);
      assert(total < 10000, `query to chart took ${total} ms`);
      // A repaint (hiding one series) is as fast; the tooltip lists the top values.
      await page.click(`${legendItem}[data-index="0"]`);
      await page.waitForFunction((s) => document.querySelector(s)?.dataset.series === '299', chart, { timeout: WAIT_MS });
      const repaintMs = Number(await page.getAttribute(chart, 'data-render-ms'));
      assert(repaintMs < 1500, `repainting took ${repaintMs} ms`);
      const box = await page.locator('[data-testid=metrics-chart-canvas]').boundingBox();
      await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
      await waitCount(page, '[data-testid=chart-tooltip-row]', 10);
      await waitContains(page, '[data-testid=metrics-chart-tooltip]', 'and 289 more');
      await shot(page, '21-metrics-300-series.png', { tall: true });
      console.log(`      300 x 1000: query to chart ${total.toFixed(0)} ms, client ${clientMs} ms, paint ${paintMs} ms, repaint ${repaintMs} ms`);
      await page.mouse.move(0, 0);
    } finally {
      await page.unroute(/\/prometheus\/api\/v1\/query_range\?/, answer);
    }
  });

  await step('alerts: a real rule file: rule states, health, the firing alert with its labels and annotations, the history', async () => {
    await page.click('[data-testid=nav-alerts]');
    await page.waitForURL(base + '/alerts');
    assertEq(await page.getAttribute('[data-testid=nav-alerts]', 'aria-current'), 'page', 'nav-alerts active');
    await waitVisible(page, '[data-testid=alerts-rules-panel]');
    await waitVisible(page, '[data-testid=alerts-active-panel]');
    // The node evaluates the test's rule file every second; refresh until the alert fires.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const alerts = await promGet(base, secret, 'alerts', assert);
      if (alerts.alerts.some((a) => a.labels.alertname === 'PaymentsErrors' && a.state === 'firing')) break;
      assert(Date.now() < deadline, 'PaymentsErrors did not fire within 30 s');
      await new Promise((r) => setTimeout(r, 500));
    }
    await page.click('[data-testid=alerts-refresh]');
    await waitCount(page, '[data-testid=rule-row]', 3);
    await waitText(page, '[data-testid=rule-row][data-rule=PaymentsErrors] [data-testid=rule-state]', 'firing');
    await waitText(page, '[data-testid=rule-row][data-rule=CheckoutSlow] [data-testid=rule-state]', 'inactive');
    await waitText(page, '[data-testid=rule-row][data-rule=PaymentsErrors] [data-testid=rule-health]', 'ok');
    await waitText(page, '[data-testid=alerts-sum-firing]', '1 firing');
    await waitText(page, '[data-testid=alerts-sum-inactive]', '1 inactive');
    await waitCount(page, '[data-testid=alert-row]', 1);
    await waitText(page, '[data-testid=alert-row] [data-testid=alert-state]', 'firing');
    await waitContains(page, '[data-testid=alert-row] [data-testid=alert-annotations]', 'More than 5% of payments fail');
    await waitContains(page, '[data-testid=alert-row]', 'severity=page');
    await waitVisible(page, '[data-testid=alerts-history-panel]');
    await waitVisible(page, '[data-testid=alert-history-row]');
    await shot(page, '23-alerts.png');
  });

  await step('alerts: one click from the firing alert to its service\'s logs and traces in its window', async () => {
    const alerts = await promGet(base, secret, 'alerts', assert);
    const activeAt = alerts.alerts.find((a) => a.labels.alertname === 'PaymentsErrors').activeAt;
    await page.click('[data-testid=alert-logs-link]');
    await page.waitForURL((u) => u.pathname === '/logs' && u.searchParams.get('query') === 'service:payments' && Number(u.searchParams.get('start')) === Date.parse(activeAt) - 300_000);
    await waitValue(page, '[data-testid=logs-query]', 'service:payments');
    await page.goBack();
    await waitVisible(page, '[data-testid=alert-traces-link]');
    await page.click('[data-testid=alert-traces-link]');
    await page.waitForURL((u) => u.pathname === '/traces' && u.searchParams.get('service') === 'payments' && Number(u.searchParams.get('start')) === Date.parse(activeAt) - 300_000);
  });

  await step('targets: the scrape targets with their health; a target that is down shows why', async () => {
    await page.click('[data-testid=nav-targets]');
    await page.waitForURL(base + '/targets');
    const data = await promGet(base, secret, 'targets', assert);
    assert(data.activeTargets.length >= 2, `expected the test's two static targets, got ${JSON.stringify(data)}`);
    await waitCount(page, '[data-testid=target-row]', data.activeTargets.length);
    // The job scraping a closed port is down with the connection error; the node itself is up.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const t = await promGet(base, secret, 'targets', assert);
      if (t.activeTargets.some((x) => x.health === 'down') && t.activeTargets.some((x) => x.health === 'up')) break;
      assert(Date.now() < deadline, 'the targets were not scraped within 30 s');
      await new Promise((r) => setTimeout(r, 500));
    }
    await page.click('[data-testid=targets-refresh]');
    await waitVisible(page, '[data-testid=target-row][data-health=down] [data-testid=target-error]');
    await waitVisible(page, '[data-testid=target-row][data-health=up]');
    const err = await page.textContent('[data-testid=target-row][data-health=down] [data-testid=target-error]');
    assert(err.trim().length > 0, 'a down target shows its error');
    await shot(page, '24-targets.png');
  });
}
