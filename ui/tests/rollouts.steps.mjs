// Browser steps for rollouts: two registered versions of a service, a rollout started over
// the API (promoted by hand, so no traffic is needed), the Rollouts list and a rollout's
// page with its weights, history and buttons (pause, resume, promote, abort), the rollout
// panel on the service page, and the decision markers on the service's charts. Run by
// console.test.mjs after the views steps.

export async function rolloutsSteps({ page, base, secret }, { step, assert, assertEq, waitVisible, waitContains, shot, WAIT_MS }) {
  const call = async (method, path, body) => {
    const r = await fetch(`${base}${path}`, {
      method,
      headers: { Authorization: `Bearer ${secret}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(5000),
    });
    return { status: r.status, body: await r.json().catch(() => null) };
  };
  const svc = 'basket';

  await step('rollouts: a start without a healthy canary is refused naming the field; with one it starts', async () => {
    for (const [version, port] of [['v1', 9301], ['v2', 9302]]) {
      const r = await call('POST', '/api/registry/instances', { service: svc, address: '127.0.0.1', port, meta: { version }, checks: [{ ttl: '600s', initial_status: 'passing' }] });
      assertEq(r.status, 201, `register ${version}`);
    }
    const bad = await call('POST', `/api/v1/rollouts/${svc}`, { to: 'v3' });
    assertEq(bad.status, 409, 'status without a healthy v3');
    assertEq(bad.body.field, 'to', 'the field named');
    const ok = await call('POST', `/api/v1/rollouts/${svc}`, { to: 'v2', steps: [20, 60, 100], interval: 'pause' });
    assertEq(ok.status, 201, `start: ${JSON.stringify(ok.body)}`);
  });

  await step('rollouts: the list shows the rollout, its phase and weights', async () => {
    await page.goto(`${base}/rollouts`);
    await waitVisible(page, `[data-testid=rollout-row][data-service=${svc}]`);
    const w = await page.getAttribute(`[data-testid=rollout-row][data-service=${svc}] [data-testid=rollout-weights]`, 'data-weights');
    assertEq(w, 'v1=80,v2=20', 'weights in the list');
    await page.click(`[data-testid=rollout-row][data-service=${svc}] [data-testid=rollout-link]`);
    await page.waitForURL((u) => u.pathname === `/rollouts/${svc}`, { timeout: WAIT_MS });
    await waitVisible(page, '[data-testid=rollout-panel] [data-testid=rollout-history]');
    await shot(page, 'rollouts.png');
  });

  await step('rollouts: promote, pause and resume from the buttons; each decision is in the history', async () => {
    await page.click('[data-testid=rollout-promote]');
    await page.waitForFunction(() => document.querySelector('[data-testid=rollout-panel] [data-testid=rollout-weights]')?.dataset.weights === 'v1=40,v2=60', null, { timeout: WAIT_MS });
    await page.click('[data-testid=rollout-pause]');
    await page.waitForSelector('[data-testid=rollout-panel] [data-testid=rollout-phase][data-phase=paused]', { timeout: WAIT_MS });
    await page.click('[data-testid=rollout-resume]');
    await page.waitForSelector('[data-testid=rollout-panel] [data-testid=rollout-phase][data-phase=progressing]', { timeout: WAIT_MS });
    const decisions = await page.$$eval('[data-testid=rollout-decision]', (rows) => rows.map((r) => r.dataset.decision));
    assertEq(decisions.join(','), 'resumed,paused,promoted,started', 'history, newest first');
  });

  await step('rollouts: abort asks first, then every request goes back to stable', async () => {
    page.once('dialog', (d) => d.accept());
    await page.click('[data-testid=rollout-abort]');
    await page.waitForSelector('[data-testid=rollout-panel] [data-testid=rollout-phase][data-phase=aborted]', { timeout: WAIT_MS });
    await waitContains(page, '[data-testid=rollout-panel] [data-testid=rollout-last-reason]', 'aborted: aborted by');
    const policy = await call('GET', `/api/config/gateway/traffic/${svc}`);
    assertEq(JSON.stringify(JSON.parse(policy.body.value).weights), '{"v1":100}', 'the traffic policy');
    assert(await page.isDisabled('[data-testid=rollout-abort]'), 'abort is disabled once finished');
  });

  await step('rollouts: the service page has the rollout panel and the decisions as chart markers', async () => {
    await page.goto(`${base}/services/${svc}?since=15m`);
    await waitVisible(page, '[data-testid=service-rollout] [data-testid=rollout-phase][data-phase=aborted]');
    const a = await call('GET', `/api/v1/annotations?service=${svc}`);
    assertEq(a.body.annotations.length, 5, 'annotations: started, promoted, paused, resumed, aborted');
    // The charts draw when the gateway has data for the service; the markers API is what they read.
    assert(a.body.annotations.every((x) => x.service === svc && x.t_ms > 0), 'annotation fields');
  });
}
