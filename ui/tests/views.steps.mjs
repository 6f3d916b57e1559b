// The Overview, Service map and service page steps of the console's browser test
// (console.test.mjs runs them after the Metrics steps). The test's node routes
// `/checkout` through its gateway to an upstream this file starts (viewsUpstream; a third of
// its answers fail), stores its own metrics every second, and has the four seeded traces
// (frontend -> orders -> inventory, payments) and the PaymentsErrors alert firing.

import http from 'node:http';

/** The node config's gateway part: service `checkout` behind route `checkout-api`. */
export function viewsGatewayToml(upstreamPort) {
  return `\n[[gateway.services]]\nname = "checkout"\nendpoints = ["http://127.0.0.1:${upstreamPort}"]\n\n[[gateway.routes]]\nname = "checkout-api"\nservice = "checkout"\n[gateway.routes.match]\npath_prefix = "/checkout"\n`;
}

/** The checkout upstream: paths ending in /fail answer 500, the rest 200 after ~5 ms. */
export function viewsUpstream(port) {
  const server = http.createServer((req, res) => {
    req.resume();
    const fail = req.url.endsWith('/fail');
    setTimeout(() => {
      res.writeHead(fail ? 500 : 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: !fail }));
    }, 5);
  });
  server.unref();
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

// A Prometheus remote_write 1.0 body (protobuf WriteRequest, snappy block format with
// literal elements only, which every snappy decoder accepts) for the host metrics step.
function varint(n) {
  const out = [];
  let v = BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return out;
}
const field = (no, bytes) => [...varint((no << 3) | 2), ...varint(bytes.length), ...bytes];
const str = (s) => [...Buffer.from(s, 'utf8')];
function sampleBytes(value, tsMs) {
  const d = Buffer.alloc(8);
  d.writeDoubleLE(value);
  return [(1 << 3) | 1, ...d, (2 << 3) | 0, ...varint(tsMs)];
}
export function remoteWriteBody(series) {
  const req = [];
  for (const { labels, samples } of series) {
    const ts = [];
    for (const [k, v] of Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1))) ts.push(...field(1, [...field(1, str(k)), ...field(2, str(v))]));
    for (const [t, v] of samples) ts.push(...field(2, sampleBytes(v, t)));
    req.push(...field(1, ts));
  }
  const out = [...varint(req.length)];
  for (let i = 0; i < req.length; i += 60) {
    const chunk = req.slice(i, i + 60);
    out.push((chunk.length - 1) << 2, ...chunk);
  }
  return Buffer.from(out);
}

const row = (svc) => `[data-testid=overview-row][data-service="${svc}"]`;
const node = (id) => `[data-testid=map-node][data-node="${id}"]`;
const edge = (id) => `[data-testid=map-edge][data-edge="${id}"]`;

export async function viewsSteps({ page, base, secret, gwPort }, { step, assert, assertEq, waitVisible, waitText, waitContains, shot, WAIT_MS }) {
  const apiGet = async (p) => {
    const r = await fetch(base + p, { headers: { Authorization: `Bearer ${secret}` }, signal: AbortSignal.timeout(5000) });
    const body = await r.json();
    assertEq(r.status, 200, `GET ${p}: ${JSON.stringify(body)}`);
    return body;
  };
  const textOf = (sel) => page.$eval(sel, (e) => e.textContent.trim());

  await step('views: traffic through the gateway reaches the overview API', async () => {
    const r = await fetch(`${base}/api/config/checkout/default/feature.flag`, {
      method: 'PUT',
      headers: { Authorization: `Bearer ${secret}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ value: 'on', comment: 'turn the flag on' }),
      signal: AbortSignal.timeout(5000),
    });
    assert(r.status === 200 || r.status === 201, `config put: ${r.status} ${await r.text()}`);
    for (let i = 0; i < 30; i++) {
      const res = await fetch(`http://127.0.0.1:${gwPort}/checkout/${i % 3 === 0 ? 'fail' : 'ok'}`, { signal: AbortSignal.timeout(5000) });
      await res.text();
      assertEq(res.status, i % 3 === 0 ? 500 : 200, `gateway answer ${i}`);
    }
    const deadline = Date.now() + 15_000;
    let last = null;
    while (Date.now() < deadline) {
      last = await apiGet('/api/overview?since=15m');
      const c = last.services.find((s) => s.name === 'checkout');
      if (c && c.rate_rps > 0 && c.error_ratio > 0.2 && c.p99_ms > 0) return;
      await new Promise((res) => setTimeout(res, 300));
    }
    throw new Error(`checkout has no rates after 15 s: ${JSON.stringify(last && last.services)}`);
  });

  await step('overview: every service with rate, errors, p99 and health; what needs attention first', async () => {
    await page.click('[data-testid=nav-overview]');
    await page.waitForURL(base + '/');
    await waitVisible(page, row('checkout'));
    // The rows refresh every 10 s: wait for one with numbers.
    await page.waitForFunction((sel) => {
      const r = document.querySelector(sel);
      return r && !r.querySelector('[data-testid=overview-rate]').textContent.includes('–');
    }, `${row('checkout')}`, { timeout: WAIT_MS + 10_000 });
    assert((await textOf(`${row('checkout')} [data-testid=overview-rate]`)).endsWith('/s'), 'rate in requests per second');
    const errors = await textOf(`${row('checkout')} [data-testid=overview-errors]`);
    const pct = Number(errors.replace('%', ''));
    assert(pct >= 20 && pct <= 50, `checkout errors ${errors}, a third of the requests failed`);
    assert(/\d/.test(await textOf(`${row('checkout')} [data-testid=overview-p99]`)), 'checkout has a p99');
    assertEq(await page.getAttribute(row('checkout'), 'data-status'), 'fail', 'a third failing is a failing service');
    await waitContains(page, `${row('checkout')} [data-testid=overview-reasons]`, '% errors');
    await waitContains(page, `${row('payments')} [data-testid=overview-alerts-cell]`, '1 firing');
    assert(Number(await page.$eval(`${row('checkout')} .spark-rate`, (e) => e.dataset.points)) > 0, 'the rate sparkline has points');
    // Needs attention first: the firing alert's service, then the other failing ones (checkout
    // and, once both its TTL checks have lapsed, orders), then the rest.
    const order = await page.$$eval('[data-testid=overview-row]', (els) => els.map((e) => [e.dataset.service, e.dataset.status]));
    assertEq(order[0][0], 'payments', `first row (${JSON.stringify(order)})`);
    const firstOk = order.findIndex(([, s]) => s !== 'fail');
    assert(firstOk === -1 || order.slice(firstOk).every(([, s]) => s !== 'fail'), `failing rows first: ${JSON.stringify(order)}`);
    const at = order.findIndex(([n]) => n === 'checkout');
    assert(at > 0 && (firstOk === -1 || at < firstOk), `checkout among the failing rows: ${JSON.stringify(order)}`);
    await shot(page, '30-overview.png', { tall: true });
    // Filter and sort live in the URL.
    await page.fill('[data-testid=overview-filter]', 'check');
    await page.waitForURL((u) => u.searchParams.get('q') === 'check');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=overview-row]').length === 1);
    await page.selectOption('[data-testid=overview-sort]', 'name');
    await page.waitForURL((u) => u.searchParams.get('sort') === 'name' && u.searchParams.get('q') === 'check');
    await page.fill('[data-testid=overview-filter]', 'no-such-service');
    await waitVisible(page, '[data-testid=overview-no-match]');
    // Keyboard: `/` focuses the filter, Escape clears it.
    await page.click('h1');
    await page.keyboard.press('/');
    assert(await page.evaluate(() => document.activeElement?.dataset.testid === 'overview-filter'), '/ focuses the filter');
    await page.keyboard.press('Escape');
    await waitVisible(page, row('frontend'));
    assertEq(await page.inputValue('[data-testid=overview-filter]'), '', 'Escape clears the filter');
  });

  await step('map: nodes and edges from traces and the gateway, coloured by health', async () => {
    await page.click('[data-testid=nav-map]');
    await page.waitForURL((u) => u.pathname === '/map');
    // The map takes the shared range, and the Logs steps' drag-to-zoom left a window in the
    // past: look at the last 15 minutes instead.
    if (new URL(page.url()).searchParams.get('since') !== '15m') await page.goto(`${base}/map?since=15m`);
    await waitVisible(page, node('checkout'));
    await waitVisible(page, `${node('signalbox-gateway')}`);
    for (const n of ['frontend', 'orders', 'inventory', 'payments']) await waitVisible(page, node(n));
    await waitVisible(page, `${edge('frontend>orders')}[data-health]`);
    await waitVisible(page, edge('orders>inventory'));
    await waitVisible(page, `${edge('signalbox-gateway>checkout')}[data-health=fail]`);
    assertEq(await page.getAttribute(node('checkout'), 'data-status'), 'fail', 'checkout node colour');
    assertEq(await page.getAttribute(node('payments'), 'data-status'), 'fail', 'payments node (alert firing)');
    await waitVisible(page, `${node('payments')} [data-testid=map-node-alerts]`);
    await waitContains(page, `[data-testid=map-edge-label][data-edge="signalbox-gateway>checkout"]`, '%');
    // A refresh keeps every node where it was.
    const where = () => page.$$eval('[data-testid=map-node]', (els) => els.map((e) => `${e.dataset.node}@${e.getAttribute('transform')}`).sort().join(' '));
    const before = await where();
    const stamp = await textOf('[data-testid=map-updated]');
    await new Promise((r) => setTimeout(r, 1100));
    await page.click('[data-testid=map-live]'); // live off: reloads once
    await page.waitForURL((u) => u.searchParams.get('live') === '0');
    await page.waitForFunction((s) => document.querySelector('[data-testid=map-updated]').textContent.trim() !== s, stamp, { timeout: WAIT_MS });
    assertEq(await where(), before, 'node positions after a refresh');
    await shot(page, '31-service-map.png', { tall: true });
  });

  await step('map layout: 30 services and 80 edges lay out fast, the same every time, with no overlap', async () => {
    const r = await page.evaluate(async () => {
      const { graphLayout, NODE_W, NODE_H } = await import('/js/components/graph-layout.js');
      let seed = 11;
      const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
      const tiers = [3, 8, 12, 7];
      const ids = [];
      const tier = {};
      tiers.forEach((n, t) => {
        for (let i = 0; i < n; i++) (ids.push(`t${t}-svc-${i}`), (tier[`t${t}-svc-${i}`] = t));
      });
      const edges = [];
      while (edges.length < 78) {
        const a = ids[Math.floor(rnd() * ids.length)];
        const b = ids[Math.floor(rnd() * ids.length)];
        if (tier[b] > tier[a] && !edges.some((e) => e.from === a && e.to === b)) edges.push({ from: a, to: b });
      }
      if (!edges.some((e) => e.from === 't1-svc-1' && e.to === 't2-svc-1')) edges.push({ from: 't1-svc-1', to: 't2-svc-1' });
      edges.push({ from: 't2-svc-1', to: 't1-svc-1' }); // a cycle
      const t0 = performance.now();
      const one = graphLayout().run(ids, edges);
      const ms = performance.now() - t0;
      const two = graphLayout().run([...ids].reverse(), [...edges].reverse());
      const same = ids.every((id) => one.nodes.get(id).x === two.nodes.get(id).x && one.nodes.get(id).y === two.nodes.get(id).y);
      const boxes = [...one.nodes.values()];
      let overlaps = 0;
      for (let i = 0; i < boxes.length; i++)
        for (let j = i + 1; j < boxes.length; j++) if (Math.abs(boxes[i].x - boxes[j].x) < NODE_W && Math.abs(boxes[i].y - boxes[j].y) < NODE_H) overlaps++;
      // One more service keeps the others in place.
      const lay = graphLayout();
      const before = lay.run(ids, edges);
      const keep = new Map([...before.nodes].map(([k, v]) => [k, `${v.x},${v.y}`]));
      const after = lay.run([...ids, 'new-svc'], [...edges, { from: 't3-svc-0', to: 'new-svc' }]);
      const moved = [...keep].filter(([k, v]) => `${after.nodes.get(k).x},${after.nodes.get(k).y}` !== v).length;
      return { ms, same, overlaps, moved, edges: edges.length, width: one.width, height: one.height, back: one.edges.filter((e) => e.back).length };
    });
    assert(r.same, 'the same graph lays out the same whatever the input order');
    assertEq(r.overlaps, 0, 'overlapping nodes');
    assertEq(r.back, 1, 'edges drawn backwards (the one cycle)');
    assert(r.edges >= 79, `${r.edges} edges`);
    assert(r.ms < 200, `layout took ${r.ms.toFixed(1)} ms`);
    assert(r.moved <= 3, `${r.moved} nodes moved when one service was added`);
    assert(r.width < 2400 && r.height < 1400, `drawing of ${r.width}x${r.height}`);
  });

  await step('map: clicking an edge shows its metrics, failing traces and logs, and the URL keeps it', async () => {
    await page.click(`[data-testid=map-edge-label][data-edge="signalbox-gateway>checkout"]`);
    await page.waitForURL((u) => u.searchParams.get('edge') === 'signalbox-gateway>checkout');
    await waitText(page, '[data-testid=map-side-title]', 'signalbox-gateway → checkout');
    await waitContains(page, '[data-testid=map-edge-errors]', '%');
    assert(/\/s$/.test(await textOf('[data-testid=map-edge-rate]')), 'edge rate');
    await waitVisible(page, '[data-testid=map-edge-failing-link]');
    await waitVisible(page, '[data-testid=map-edge-log-none], [data-testid=map-edge-log-lines]');
    const logsHref = await page.getAttribute('[data-testid=map-edge-logs]', 'href');
    const logsUrl = new URL(logsHref, base);
    assert(logsUrl.pathname === '/logs' && logsUrl.searchParams.get('query') === 'service:checkout level:error', `logs link ${logsHref}`);
    await shot(page, '32-service-map-edge.png', { tall: true });
    // A deep link opens the same selection.
    const url = page.url();
    await page.goto(url);
    await waitText(page, '[data-testid=map-side-title]', 'signalbox-gateway → checkout');
    const traceHref = await page.getAttribute('[data-testid=map-edge-failing-link]', 'href');
    await page.click('[data-testid=map-edge-failing-link]');
    await page.waitForURL((u) => u.pathname === traceHref.split('?')[0]);
    await page.goBack();
    await waitText(page, '[data-testid=map-side-title]', 'signalbox-gateway → checkout');
  });

  await step('map: a node opens its service page', async () => {
    await page.click(node('checkout'));
    await page.waitForURL((u) => u.searchParams.get('node') === 'checkout');
    await waitText(page, '[data-testid=map-side-title]', 'checkout');
    await page.click('[data-testid=map-node-service-link]');
    await page.waitForURL((u) => u.pathname === '/services/checkout');
  });

  await step('service page: RED, routes, config versions, failing traces, charts', async () => {
    await waitText(page, '[data-testid=service-title]', 'checkout');
    await page.waitForFunction(() => {
      const e = document.querySelector('[data-testid=service-red-rate]');
      return e && e.textContent.endsWith('/s');
    }, null, { timeout: WAIT_MS });
    const errors = Number((await textOf('[data-testid=service-red-errors]')).replace('%', ''));
    assert(errors >= 20 && errors <= 50, `service errors ${errors}%`);
    await waitVisible(page, '[data-testid=service-route-row][data-route=checkout-api]');
    await waitVisible(page, '[data-testid=service-config-row][data-key="feature.flag"][data-version="1"]');
    await waitContains(page, '[data-testid=service-config-row][data-key="feature.flag"]', 'ops');
    await waitContains(page, '[data-testid=service-config-row][data-key="feature.flag"]', 'turn the flag on');
    await waitVisible(page, '[data-testid=service-failing-row]');
    await waitVisible(page, '[data-testid=service-slow-row]');
    await waitVisible(page, '[data-testid=service-circuit-now]');
    await waitVisible(page, '[data-testid=service-alerts-none]');
    await page.waitForFunction(() => Number(document.querySelector('[data-testid=service-chart-rate]')?.dataset.series || 0) >= 1, null, { timeout: WAIT_MS });
    await page.waitForFunction(() => Number(document.querySelector('[data-testid=service-chart-errors]')?.dataset.series || 0) >= 1, null, { timeout: WAIT_MS });
    await waitVisible(page, '[data-testid=service-logs] .empty, [data-testid=service-logs-list]');
    await shot(page, '33-service-page.png', { tall: true });
    // The alert's service shows it firing.
    await page.goto(`${base}/services/payments?since=15m`);
    await waitVisible(page, '[data-testid=service-alert-row][data-state=firing]');
    await waitContains(page, '[data-testid=service-alerts]', 'PaymentsErrors');
    await waitVisible(page, '[data-testid=service-routes-none]');
  });

  await step('hosts: a machine at 95 % memory shows on the service page, the overview row and the map node', async () => {
    const now = Date.now();
    const counter = (perS) => Array.from({ length: 13 }, (_, i) => [now - 120_000 + i * 10_000, 1000 + perS * i * 10]);
    const gauge = (v) => [[now - 10_000, v], [now, v]];
    const host = { instance: 'stock-host', job: 'node' };
    const series = [
      { labels: { __name__: 'node_cpu_seconds_total', ...host, cpu: '0', mode: 'idle' }, samples: counter(0.7) },
      { labels: { __name__: 'node_cpu_seconds_total', ...host, cpu: '0', mode: 'user' }, samples: counter(0.3) },
      { labels: { __name__: 'node_memory_MemTotal_bytes', ...host }, samples: gauge(8e9) },
      { labels: { __name__: 'node_memory_MemAvailable_bytes', ...host }, samples: gauge(0.4e9) },
      { labels: { __name__: 'node_filesystem_size_bytes', ...host, mountpoint: '/', device: 'sda1', fstype: 'ext4' }, samples: gauge(100e9) },
      { labels: { __name__: 'node_filesystem_avail_bytes', ...host, mountpoint: '/', device: 'sda1', fstype: 'ext4' }, samples: gauge(60e9) },
      { labels: { __name__: 'node_network_receive_bytes_total', ...host, device: 'eth0' }, samples: counter(2048) },
      { labels: { __name__: 'node_network_transmit_bytes_total', ...host, device: 'eth0' }, samples: counter(1024) },
      { labels: { __name__: 'container_memory_working_set_bytes', service: 'stock', instance: 'stock-host', name: 'stock.service' }, samples: gauge(256e6) },
      { labels: { __name__: 'container_spec_memory_limit_bytes', service: 'stock', instance: 'stock-host', name: 'stock.service' }, samples: gauge(512e6) },
      { labels: { __name__: 'container_oom_events_total', service: 'stock', instance: 'stock-host', name: 'stock.service' }, samples: counter(0.1) },
    ];
    const w = await fetch(`${base}/prometheus/api/v1/write`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${secret}`, 'Content-Type': 'application/x-protobuf', 'Content-Encoding': 'snappy', 'X-Prometheus-Remote-Write-Version': '0.1.0' },
      body: remoteWriteBody(series),
      signal: AbortSignal.timeout(5000),
    });
    assertEq(w.status, 204, `remote_write: ${await w.text()}`);
    const r = await fetch(`${base}/api/registry/instances`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${secret}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ service: 'stock', address: '127.0.0.9', port: 8080, meta: { host: 'stock-host' }, checks: [{ ttl: '600s', initial_status: 'passing' }] }),
      signal: AbortSignal.timeout(5000),
    });
    assertEq(r.status, 201, `register: ${await r.text()}`);

    await page.goto(`${base}/services/stock?since=1m`);
    const hostRow = '[data-testid=host-row][data-host="stock-host"]';
    await waitVisible(page, hostRow);
    await waitContains(page, `${hostRow} [data-testid=host-trouble]`, 'memory 95% used');
    const memRatio = Number(await page.getAttribute(`${hostRow} [data-testid=host-memory]`, 'data-ratio'));
    assert(Math.abs(memRatio - 0.95) < 1e-9, `memory bar at ${memRatio}`);
    await waitContains(page, `${hostRow} [data-testid=host-cpu]`, '30% of 1 cores');
    await waitContains(page, `${hostRow} [data-testid=host-disk]`, '60% free');
    await waitContains(page, '[data-testid=container-row][data-name="stock.service"] [data-testid=container-memory]', '/');
    // The container's OOM kills sit in the Trouble column (the row's last cell).
    await waitContains(page, '[data-testid=container-row][data-name="stock.service"] td:last-child [data-testid=container-oom]', 'OOM kill');
    const href = await page.getAttribute(`${hostRow} a:has([data-testid=host-memory])`, 'href');
    const q = new URL(href, base);
    assert(q.pathname === '/metrics-explorer' && q.searchParams.get('query').includes('node_memory_MemAvailable_bytes{instance="stock-host"}'), `memory link ${href}`);
    await shot(page, '34-service-hosts.png', { tall: true });

    await page.goto(`${base}/?since=1m`);
    await waitContains(page, `${row('stock')} [data-testid=overview-machine-trouble]`, 'machine stock-host');
    const title = await page.getAttribute(`${row('stock')} [data-testid=overview-machine-trouble]`, 'title');
    assert(title.includes('memory 95% used'), `tooltip ${title}`);
    assertEq(await page.getAttribute(row('stock'), 'data-status'), 'warn', 'a service on a machine in trouble is degraded');
    await page.goto(`${base}/map?since=1m`);
    await waitVisible(page, `${node('stock')} [data-testid=map-node-machine-trouble]`);
    await waitContains(page, `${node('stock')} [data-testid=map-node-machine-trouble] title`, 'memory 95% used');
  });
}
