// The sections of one service's page (/services/{name}?since=1h), under its instances:
// RED charts over the range (the gateway's metrics through PromQL), firing alerts, circuits
// and ejections now and their history, the routes that lead to it, its application's
// configuration versions, the machines and containers it runs on (components/hosts.js),
// recent error logs, and its slowest and failing traces. Everything
// but the charts and the logs comes from GET /api/services/{name}/summary.
//
//   const s = serviceSections(container, name, location.search);
//   s.update(newSearch);  s.unmount();

import { h, setChildren, notice, empty, timeEl } from '../dom.js';
import { api, seg } from '../api.js';
import { navigate } from '../router.js';
import { prom, promErrorText } from '../promql.js';
import { serviceUrl, serviceLogsUrl, traceUrl, tracesUrl, metricsUrl, mapUrl, alertsUrl, configUrl } from '../links.js';
import { timeRange, readRange, rangeBounds } from '../components/time-range.js';
import { lineChart, seriesColor } from '../components/line-chart.js';
import { fmtRate, fmtPct, fmtMs, healthBadge, errorLevel, latencyLevel } from '../components/red.js';
import { hostsTable } from '../components/hosts.js';
import { rolloutPanel } from '../components/rollouts.js';

const REFRESH_MS = 15_000;

function rangeArg(r) {
  return r.start ? { start: r.start, end: r.end || undefined } : { since: r.since };
}

function rangeQuery(r) {
  const p = new URLSearchParams();
  if (r.start) {
    p.set('start', r.start);
    if (r.end) p.set('end', r.end);
  } else p.set('since', r.since);
  return p;
}

function section(title, testid, ...body) {
  return h('section', { class: 'panel', 'data-testid': testid }, h('div', { class: 'panel-head' }, h('h2', null, title)), ...body);
}

function table(testid, head, rows) {
  return h(
    'div',
    { class: 'table-scroll' },
    h('table', { class: 'table', 'data-testid': testid }, h('thead', null, h('tr', null, head.map((x) => (typeof x === 'string' ? h('th', null, x) : x)))), h('tbody', null, rows)),
  );
}

function matchText(m) {
  if (!m || typeof m !== 'object') return '';
  const parts = [];
  if (m.host) parts.push(`host ${m.host}`);
  if (m.path_prefix) parts.push(`path ${m.path_prefix}*`);
  if (m.path) parts.push(`path ${m.path}`);
  if (m.methods && m.methods.length) parts.push(m.methods.join(','));
  if (m.headers && Object.keys(m.headers).length) parts.push(`headers ${Object.keys(m.headers).join(',')}`);
  return parts.join(' · ') || JSON.stringify(m);
}

export function serviceSections(container, name, search) {
  let range = readRange(new URLSearchParams(search || ''));
  let summary = null;
  let summaryError = null;
  let logs = null;
  let logsError = null;
  let timer = 0;
  let seq = 0;
  let dead = false;

  const picker = timeRange({
    onChange: (r) => navigate(serviceUrl(name, rangeArg(r))),
    testid: 'service-range',
  });
  const updated = h('span', { class: 'panel-hint', 'data-testid': 'service-updated' });
  const problems = h('div', { 'data-testid': 'service-problems' });
  const tiles = h('div', { class: 'cards', 'data-testid': 'service-red' });
  const charts = {
    rate: lineChart({ testid: 'service-chart-rate', onSelect: zoomTo }),
    errors: lineChart({ testid: 'service-chart-errors', onSelect: zoomTo }),
    p99: lineChart({ testid: 'service-chart-p99', onSelect: zoomTo }),
  };
  const chartErr = { rate: h('div'), errors: h('div'), p99: h('div') };
  const alertsBox = h('div');
  const circuitsBox = h('div');
  const hostsBox = h('div');
  const routesBox = h('div');
  const configBox = h('div');
  const logsBox = h('div');
  const slowBox = h('div');
  const failBox = h('div');
  const links = h('div', { class: 'link-list' });
  const rolloutBox = h('div');
  let annotations = [];

  setChildren(
    container,
    h('div', { class: 'page-head service-head' }, h('h2', null, `${name}: traffic and changes`), updated, h('div', { class: 'page-head-spacer' }), links, picker.chip, picker.el),
    problems,
    tiles,
    h(
      'div',
      { class: 'grid-3' },
      section('Requests per second', 'service-rate-panel', chartErr.rate, charts.rate.el),
      section('Errors (%)', 'service-errors-panel', chartErr.errors, charts.errors.el),
      section('p99 latency (ms)', 'service-p99-panel', chartErr.p99, charts.p99.el),
    ),
    section('Rollout', 'service-rollout', rolloutBox),
    section('Alerts', 'service-alerts', alertsBox),
    section('Circuits and ejections', 'service-circuits', circuitsBox),
    section('Hosts and containers', 'service-hosts', hostsBox),
    h('div', { class: 'grid-2' }, section('Routes to this service', 'service-routes', routesBox), section('Configuration versions', 'service-config', configBox)),
    section('Recent error logs', 'service-logs', logsBox),
    h('div', { class: 'grid-2' }, section('Slowest traces', 'service-slow-traces', slowBox), section('Failing traces', 'service-failing-traces', failBox)),
  );

  const rollout = rolloutPanel(rolloutBox, name, { compact: true });

  function zoomTo(startMs, endMs) {
    navigate(serviceUrl(name, { start: String(Math.floor(startMs)), end: String(Math.ceil(endMs)) }));
  }

  function paintLinks() {
    const r = rangeArg(range);
    setChildren(
      links,
      h('a', { href: mapUrl({ node: name, ...r }), 'data-testid': 'service-map-link' }, 'Map'),
      h('a', { href: serviceLogsUrl(name, r), 'data-testid': 'service-logs-link' }, 'Logs'),
      h('a', { href: tracesUrl({ service: name, ...r }), 'data-testid': 'service-traces-link' }, 'Traces'),
      summary ? h('a', { href: metricsUrl({ query: summary.queries.rate, ...r }), 'data-testid': 'service-metrics-link' }, 'Metrics') : null,
    );
  }

  function tile(label, value, testid, level) {
    return h('div', { class: `card card-plain${level ? ` level-${level}` : ''}` }, h('div', { class: 'card-value', 'data-testid': testid }, value), h('div', { class: 'card-label' }, label));
  }

  function paintSummary() {
    paintLinks();
    const issues = [];
    if (summaryError) issues.push(notice('error', `Could not load the service summary: ${summaryError}`));
    if (summary) for (const p of summary.problems) issues.push(notice('warning', p));
    setChildren(problems, issues);
    if (!summary) {
      const msg = summaryError ? empty('Unavailable', 'The page retries every 15 seconds.') : h('div', { class: 'empty' }, 'Loading…');
      for (const b of [alertsBox, circuitsBox, hostsBox, routesBox, configBox, slowBox, failBox]) setChildren(b, msg.cloneNode(true));
      return;
    }
    const s = summary;
    const t = s.thresholds;
    const red = s.red || {};
    const firing = s.alerts.filter((a) => a.state === 'firing');
    setChildren(
      tiles,
      tile('Requests', fmtRate(red.rate_rps), 'service-red-rate'),
      tile('Errors', fmtPct(red.error_ratio), 'service-red-errors', errorLevel(red.error_ratio, t)),
      tile('p99', fmtMs(red.p99_ms), 'service-red-p99', latencyLevel(red.p99_ms, t)),
      tile('Alerts firing', String(firing.length), 'service-red-alerts', firing.length ? 'fail' : ''),
      tile('Instances', String(s.instances.length), 'service-red-instances'),
    );

    setChildren(
      alertsBox,
      s.alerts.length
        ? table(
            'service-alerts-table',
            ['Alert', 'State', 'Severity', 'Summary', 'Active since'],
            s.alerts.map((a) => h('tr', { 'data-testid': 'service-alert-row', 'data-state': a.state }, h('td', null, h('a', { href: alertsUrl() }, a.name)), h('td', null, healthBadge(a.state === 'firing' ? 'fail' : 'warn')), h('td', null, a.severity || '–'), h('td', null, a.summary || '–'), h('td', null, a.active_at ? timeEl(Date.parse(a.active_at)) : '–'))),
          )
        : h('div', { class: 'empty ok', 'data-testid': 'service-alerts-none' }, 'No alert is firing or pending for this service.'),
    );

    setChildren(hostsBox, hostsTable(s.hosts, rangeArg(range)));

    const g = s.gateway;
    const history = s.circuit_history;
    setChildren(
      circuitsBox,
      !g
        ? h('div', { class: 'empty' }, 'The gateway does not route to this service, so it has no circuits or ejections. Add a route in gateway.routes to put it behind the gateway.')
        : h(
            'div',
            { class: 'circuit-now', 'data-testid': 'service-circuit-now' },
            h('span', null, 'Service circuit: '),
            g.circuit ? h('span', { class: `badge circuit-${g.circuit}`, 'data-testid': 'service-circuit-state' }, g.circuit.replace('_', '-')) : h('span', { class: 'muted' }, 'none configured'),
            h('span', { class: 'muted' }, ` · ${g.endpoints.length} endpoint(s), ${g.endpoints.filter((e) => e.ejected).length} ejected, ${g.endpoints.reduce((n, e) => n + (e.ejections || 0), 0)} ejection(s) so far`),
          ),
      history === null
        ? null
        : history.length
          ? table(
              'service-circuit-history',
              ['When', 'What', 'Endpoint', 'Change'],
              history.map((x) =>
                h(
                  'tr',
                  { 'data-testid': 'service-circuit-change' },
                  h('td', null, timeEl(x.t_ms)),
                  h('td', null, x.kind === 'circuit' ? `circuit (${x.scope})` : 'ejection'),
                  h('td', { class: 'mono' }, x.endpoint || '–'),
                  h('td', null, `${x.from.replace('_', '-')} → `, h('strong', null, x.to.replace('_', ' ').replace('half open', 'half-open'))),
                ),
              ),
            )
          : h('div', { class: 'empty', 'data-testid': 'service-circuit-history-none' }, 'No circuit opened and no endpoint was ejected in this window.'),
    );

    setChildren(
      routesBox,
      s.routes === null
        ? h('div', { class: 'empty' }, 'No gateway runs on this node.')
        : s.routes.length
          ? table(
              'service-routes-table',
              ['Route', 'Match', 'Timeout', 'Retries'],
              s.routes.map((r) => h('tr', { 'data-testid': 'service-route-row', 'data-route': r.name }, h('td', null, r.name), h('td', { class: 'mono' }, matchText(r.match)), h('td', null, r.timeouts ? `${r.timeouts.request_ms} ms` : '–'), h('td', null, r.retry ? String(r.retry.attempts) : '–'))),
            )
          : h('div', { class: 'empty', 'data-testid': 'service-routes-none' }, 'No gateway route leads to this service. Add one under gateway.routes (in the node config or the central configuration).'),
    );

    setChildren(
      configBox,
      s.config === null
        ? h('div', { class: 'empty' }, 'The configuration history could not be read.')
        : s.config.length
          ? table(
              'service-config-table',
              ['Key', 'Version', 'Changed by', 'Comment', 'When'],
              s.config.map((c) =>
                h(
                  'tr',
                  { 'data-testid': 'service-config-row', 'data-key': c.key, 'data-version': c.version },
                  h('td', null, h('a', { class: 'mono', href: configUrl(c.application, c.profile, c.key), title: c.value_preview }, `${c.profile}/${c.key}`)),
                  h('td', { class: 'num' }, c.deleted ? `v${c.version} (deleted)` : `v${c.version}`),
                  h('td', null, c.author || '–'),
                  h('td', null, c.comment || '–'),
                  h('td', null, timeEl(c.time_unix_ms)),
                ),
              ),
            )
          : h('div', { class: 'empty', 'data-testid': 'service-config-none' }, `No configuration for application “${name}”. `, h('a', { href: '/config?new' }, 'Create a key')),
    );

    const traceRows = (list, testid, none) =>
      list === null
        ? h('div', { class: 'empty' }, 'Traces are not enabled on this node.')
        : list.length
          ? table(
              testid,
              ['Trace', 'Root', 'Duration', 'Spans', 'Started'],
              list.map((x) =>
                h(
                  'tr',
                  { 'data-testid': `${testid}-row` },
                  h('td', null, h('a', { class: 'mono', href: traceUrl(x.trace_id) }, x.trace_id.slice(0, 16)), x.error ? h('span', { class: 'badge health-fail' }, 'error') : null),
                  h('td', null, `${x.root_service}: ${x.root_operation}`),
                  h('td', { class: 'num' }, fmtMs(x.duration_ms)),
                  h('td', { class: 'num' }, String(x.span_count)),
                  h('td', null, timeEl(Number(BigInt(x.start_unix_nanos) / 1000000n))),
                ),
              ),
            )
          : h('div', { class: 'empty', 'data-testid': `${testid}-none` }, none);
    setChildren(slowBox, traceRows(s.slowest_traces, 'service-slow', 'No traces of this service in the window.'));
    setChildren(failBox, traceRows(s.failing_traces, 'service-failing', 'No failing traces in the window.'));
    paintCharts();
  }

  function paintLogs() {
    if (logsError) return setChildren(logsBox, notice('error', `Could not load the logs: ${logsError}`));
    if (!logs) return setChildren(logsBox, h('div', { class: 'empty' }, 'Loading…'));
    if (!logs.length) return setChildren(logsBox, h('div', { class: 'empty ok', 'data-testid': 'service-logs-none' }, 'No error logs in this window. ', h('a', { href: serviceLogsUrl(name, rangeArg(range)) }, 'All logs of this service')));
    setChildren(
      logsBox,
      h(
        'ul',
        { class: 'log-lines', 'data-testid': 'service-logs-list' },
        logs.map((r) =>
          h(
            'li',
            { 'data-testid': 'service-log-line' },
            h('span', { class: 'muted mono' }, new Date(Number(BigInt(r.unix_nanos) / 1000000n)).toLocaleTimeString()),
            ' ',
            h('span', { class: 'badge health-fail' }, r.severity),
            ' ',
            h('span', { class: 'mono' }, String(r.body).slice(0, 300)),
            r.trace_id ? [' ', h('a', { href: traceUrl(r.trace_id, r.span_id) }, 'trace')] : null,
          ),
        ),
      ),
      h('div', { class: 'link-list' }, h('a', { href: serviceLogsUrl(name, { errors: true, ...rangeArg(range) }) }, 'All error logs')),
    );
  }

  async function paintCharts() {
    if (!summary) return;
    const { startMs, endMs } = rangeBounds(range);
    const stepMs = Math.max(5000, Math.ceil((endMs - startMs) / 240 / 1000) * 1000);
    const n = Math.floor((endMs - startMs) / stepMs) + 1;
    const q = summary.queries;
    const specs = {
      rate: q.rate,
      errors: `(${q.errors}) / (${q.rate}) * 100`,
      p99: q.p99_ms,
    };
    const mine = seq;
    try {
      const a = await api('GET', `/api/v1/annotations?service=${encodeURIComponent(name)}&start=${Math.floor(startMs)}&end=${Math.ceil(endMs)}`);
      annotations = (a.annotations || []).map((x) => ({ t: x.t_ms, label: `rollout ${x.decision.replace('_', ' ')}`, color: x.decision === 'rolled_back' || x.decision === 'aborted' ? '#c62828' : '#8e44ad' }));
    } catch {
      annotations = [];
    }
    await Promise.all(
      Object.entries(specs).map(async ([k, query]) => {
        try {
          const d = await prom('query_range', { query, start: startMs / 1000, end: endMs / 1000, step: stepMs / 1000 });
          if (dead || mine !== seq) return;
          const series = (d.result || []).map((s, i) => {
            const values = new Float64Array(n).fill(NaN);
            for (const [t, v] of s.values) {
              const idx = Math.round((t * 1000 - startMs) / stepMs);
              if (idx >= 0 && idx < n) values[idx] = Number(v);
            }
            return { name: s.metric.service || name, color: k === 'errors' ? '#c62828' : k === 'p99' ? '#e8750a' : seriesColor(i), values };
          });
          setChildren(chartErr[k], series.length ? null : h('div', { class: 'muted small chart-note', 'data-testid': `service-chart-${k}-empty` }, 'No requests through the gateway in this range.'));
          charts[k].paint({ startMs, stepMs, n, series }, { markers: annotations });
        } catch (e) {
          if (dead || e.status === 401) return;
          setChildren(chartErr[k], notice('error', `Could not load the chart: ${promErrorText(e)}`));
        }
      }),
    );
  }

  async function load() {
    clearTimeout(timer);
    const mine = ++seq;
    const rq = rangeQuery(range);
    const logQ = new URLSearchParams(rq);
    const term = /^[\w.\-/]+$/.test(name) ? name : `"${name.replace(/["\\]/g, (c) => `\\${c}`)}"`;
    logQ.set('query', `service:${term} level:error`);
    logQ.set('limit', '20');
    const [s, l] = await Promise.allSettled([api('GET', `/api/services/${seg(name)}/summary?${rq}`), api('GET', `/api/logs?${logQ}`)]);
    if (dead || mine !== seq) return;
    if (s.status === 'fulfilled') {
      summary = s.value;
      summaryError = null;
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } else if (s.reason.status !== 401) summaryError = s.reason.message;
    if (l.status === 'fulfilled') {
      logs = l.value.records || [];
      logsError = null;
    } else if (l.reason.status === 404) {
      logs = [];
      logsError = null;
    } else if (l.reason.status !== 401) logsError = l.reason.message;
    paintSummary();
    paintLogs();
    if (!range.start || !range.end) timer = setTimeout(load, REFRESH_MS);
  }

  picker.set(range);
  paintSummary();
  paintLogs();
  load();
  return {
    update(nextSearch) {
      const next = readRange(new URLSearchParams(nextSearch || ''));
      if (JSON.stringify(next) === JSON.stringify(range)) return;
      range = next;
      picker.set(range);
      summary = null;
      logs = null;
      paintSummary();
      paintLogs();
      load();
    },
    unmount() {
      dead = true;
      clearTimeout(timer);
      rollout.unmount();
    },
  };
}
