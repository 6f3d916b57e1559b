// One service's rollout (GET /api/v1/rollouts/{service}): phase, current weights, canary
// against stable error rate and p99 as charts with the decisions as markers, the decision
// history with reasons and numbers, and buttons to pause, resume, promote and abort. Used by
// the Rollouts page and the service page.
//
//   const p = rolloutPanel(container, 'checkout', { compact: true });
//   p.refresh();  p.unmount();

import { h, setChildren, notice, timeEl } from '../dom.js';
import { api, seg } from '../api.js';
import { prom, promErrorText } from '../promql.js';
import { lineChart } from './line-chart.js';
import { fmtPct, fmtMs } from './red.js';

const REFRESH_MS = 3_000;
const STABLE_COLOR = '#2f6fed';
const CANARY_COLOR = '#e8750a';
const DECISION_COLORS = { rolled_back: '#c62828', aborted: '#c62828', succeeded: '#2f9e44', promoted: '#12a594', switched: '#8e44ad', started: '#5c6f82', paused: '#c89b00', resumed: '#5c6f82' };

/** A phase badge. */
export function phaseBadge(phase) {
  const cls = { progressing: 'warning', paused: 'warning', succeeded: 'passing', rolled_back: 'critical', aborted: 'critical' }[phase] || 'warning';
  return h('span', { class: `badge status-${cls}`, 'data-testid': 'rollout-phase', 'data-phase': phase }, String(phase || '').replace('_', ' '));
}

/** The weights as a bar of version shares. */
export function weightsBar(weights, spec) {
  const entries = Object.entries(weights || {});
  return h(
    'div',
    { class: 'rollout-weights', 'data-testid': 'rollout-weights', 'data-weights': entries.map(([k, v]) => `${k}=${v}`).join(',') },
    entries.map(([version, w]) =>
      h('span', { class: 'rollout-weight', style: { flexGrow: String(Math.max(w, 1)), background: spec && version === spec.canary ? CANARY_COLOR : STABLE_COLOR }, title: `${version}: ${w}%` }, `${version} ${w}%`),
    ),
  );
}

function decisionText(d) {
  return String(d || '').replace('_', ' ');
}

export function rolloutPanel(container, service, { compact = false } = {}) {
  let dead = false;
  let timer = 0;
  let seq = 0;
  let busy = false;
  const head = h('div', { class: 'rollout-head' });
  const message = h('div');
  const charts = {
    errors: lineChart({ testid: 'rollout-chart-errors' }),
    p99: lineChart({ testid: 'rollout-chart-p99' }),
  };
  const chartNote = { errors: h('div'), p99: h('div') };
  const historyBox = h('div');
  const chartsBox = h(
    'div',
    { class: 'grid-2' },
    h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h3', null, 'Error rate (%): canary vs stable')), chartNote.errors, charts.errors.el),
    h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h3', null, 'p99 latency (ms): canary vs stable')), chartNote.p99, charts.p99.el),
  );
  setChildren(container, h('div', { class: 'rollout-panel', 'data-testid': 'rollout-panel', 'data-service': service }, head, message, chartsBox, historyBox));

  async function act(action) {
    if (busy) return;
    if (action === 'abort' && !window.confirm(`Abort the rollout of ${service}? Every request goes back to the stable version.`)) return;
    busy = true;
    try {
      await api('POST', `/api/v1/rollouts/${seg(service)}/${action}`);
      setChildren(message, notice('success', `${action} done.`));
    } catch (e) {
      setChildren(message, notice('error', `${action} failed: ${e.message}`));
    } finally {
      busy = false;
    }
    refresh();
  }

  function button(action, label, enabled) {
    return h('button', { type: 'button', class: `btn btn-sm${action === 'abort' ? ' btn-danger' : ''}`, 'data-testid': `rollout-${action}`, disabled: !enabled, onclick: () => act(action) }, label);
  }

  function paint(r) {
    const s = r.spec;
    const active = r.phase === 'progressing' || r.phase === 'paused';
    const last = r.history[r.history.length - 1];
    setChildren(
      head,
      h(
        'div',
        { class: 'rollout-title' },
        phaseBadge(r.phase),
        h('strong', null, ` ${s.stable} → ${s.canary}`),
        h('span', { class: 'muted' }, ` · ${r.kind === 'switch' ? 'blue-green switch' : `step ${r.step + 1} of ${s.steps.length} (${s.steps.join(', ')} %)`}`),
        h('span', { class: 'muted' }, s.interval_ms ? ` · every ${s.interval_ms / 1000}s` : r.kind === 'canary' ? ' · promote by hand' : ''),
        h('span', { class: 'muted' }, ` · max error rate ${fmtPct(s.thresholds.max_error_rate)}`),
      ),
      weightsBar(r.weights, s),
      last ? h('div', { class: 'rollout-last', 'data-testid': 'rollout-last-reason' }, h('strong', null, `${decisionText(last.decision)}: `), last.reason) : null,
      h(
        'div',
        { class: 'rollout-actions' },
        button('pause', 'Pause', r.phase === 'progressing'),
        button('resume', 'Resume', r.phase === 'paused'),
        button('promote', 'Promote', active),
        button('abort', 'Abort', active),
      ),
    );
    const rows = [...r.history].reverse();
    setChildren(
      historyBox,
      h(
        'div',
        { class: 'table-scroll' },
        h(
          'table',
          { class: 'table', 'data-testid': 'rollout-history' },
          h('thead', null, h('tr', null, ['When', 'Decision', 'Weights', 'Canary', 'Stable', 'Reason', 'By'].map((x) => h('th', null, x)))),
          h(
            'tbody',
            null,
            (compact ? rows.slice(0, 6) : rows).map((e) => {
              const m = e.measurements;
              const fig = (v) => (v ? `${fmtPct(v.error_rate)} err · ${fmtMs(v.p99_ms)} · ${Math.round(v.requests)} req` : '–');
              return h(
                'tr',
                { 'data-testid': 'rollout-decision', 'data-decision': e.decision },
                h('td', null, timeEl(e.t_ms)),
                h('td', null, h('span', { class: 'badge badge-plain', style: { color: DECISION_COLORS[e.decision] || '' } }, decisionText(e.decision))),
                h('td', { class: 'mono' }, Object.entries(e.weights).map(([k, v]) => `${k}=${v}%`).join(' ')),
                h('td', { class: 'small' }, m ? fig(m.canary) : '–'),
                h('td', { class: 'small' }, m ? fig(m.stable) : '–'),
                h('td', null, e.reason),
                h('td', { class: 'muted' }, e.by),
              );
            }),
          ),
        ),
      ),
    );
    paintCharts(r);
  }

  async function paintCharts(r) {
    const endMs = r.finished_ms ? Math.min(Date.now(), r.finished_ms + 120_000) : Date.now();
    const startMs = Math.min(r.started_ms - 60_000, endMs - 300_000);
    const stepMs = Math.max(1000, Math.ceil((endMs - startMs) / 200 / 1000) * 1000);
    const n = Math.floor((endMs - startMs) / stepMs) + 1;
    const markers = r.history.filter((e) => e.decision !== 'held').map((e) => ({ t: e.t_ms, label: decisionText(e.decision), color: DECISION_COLORS[e.decision] || '#5c6f82' }));
    const range = `${Math.max(10, Math.round((stepMs * 4) / 1000))}s`;
    const q = (text) => text.replaceAll('[1m]', `[${range}]`);
    const specs = {
      errors: [
        [r.spec.stable, `(${q(r.queries.stable.error_ratio)}) * 100`, STABLE_COLOR],
        [r.spec.canary, `(${q(r.queries.canary.error_ratio)}) * 100`, CANARY_COLOR],
      ],
      p99: [
        [r.spec.stable, q(r.queries.stable.p99_ms), STABLE_COLOR],
        [r.spec.canary, q(r.queries.canary.p99_ms), CANARY_COLOR],
      ],
    };
    const mine = seq;
    for (const [k, list] of Object.entries(specs)) {
      try {
        const series = [];
        for (const [name, query, color] of list) {
          const d = await prom('query_range', { query, start: startMs / 1000, end: endMs / 1000, step: stepMs / 1000 });
          const values = new Float64Array(n).fill(NaN);
          for (const s of d.result || []) {
            for (const [t, v] of s.values) {
              const idx = Math.round((t * 1000 - startMs) / stepMs);
              if (idx >= 0 && idx < n) values[idx] = Number(v);
            }
          }
          series.push({ name, color, values });
        }
        if (dead || mine !== seq) return;
        const none = series.every((s) => s.values.every((v) => Number.isNaN(v)));
        setChildren(chartNote[k], none ? h('div', { class: 'muted small chart-note' }, 'No requests through the gateway for these versions yet.') : null);
        charts[k].paint({ startMs, stepMs, n, series }, { markers });
      } catch (e) {
        if (dead || e.status === 401) return;
        setChildren(chartNote[k], notice('error', `Could not load the chart: ${promErrorText(e)}`));
      }
    }
  }

  async function refresh() {
    clearTimeout(timer);
    const mine = ++seq;
    try {
      const r = await api('GET', `/api/v1/rollouts/${seg(service)}`);
      if (dead || mine !== seq) return;
      container.hidden = false;
      paint(r);
      if (r.phase === 'progressing' || r.phase === 'paused' || (r.finished_ms && Date.now() - r.finished_ms < 120_000)) timer = setTimeout(refresh, REFRESH_MS);
      else timer = setTimeout(refresh, REFRESH_MS * 5);
    } catch (e) {
      if (dead || mine !== seq) return;
      if (e.status === 404) {
        setChildren(head, h('div', { class: 'empty', 'data-testid': 'rollout-none' }, `No rollout of ${service} yet. Start one with: signalbox rollout start ${service} --to VERSION`));
        chartsBox.hidden = true;
        setChildren(historyBox);
      } else if (e.status !== 401) setChildren(message, notice('error', `Could not load the rollout: ${e.message}`));
      timer = setTimeout(refresh, REFRESH_MS * 5);
      return;
    }
    chartsBox.hidden = false;
  }

  refresh();
  return {
    refresh,
    unmount() {
      dead = true;
      clearTimeout(timer);
      charts.errors.destroy();
      charts.p99.destroy();
    },
  };
}
