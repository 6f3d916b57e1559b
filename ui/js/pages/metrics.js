// Metrics (/metrics-explorer; /metrics itself is the node's Prometheus endpoint): a PromQL
// editor with completion, a line chart of the query over a time range (drag across it to
// zoom in), a legend whose entries toggle their series, a stacked view and a table of the
// values at the end of the range. The view lives in the URL
// (/metrics-explorer?query=&since=1h|start=&end=&step=&view=graph|table&stacked=1), so a
// pasted link reopens it and back/forward move between queries.

import { h, setChildren, empty, notice, plural } from '../dom.js';
import { navigate } from '../router.js';
import { metricsUrl, alertsUrl, targetsUrl, windowUrls, serviceOfQuery } from '../links.js';
import { prom, promEnvelope, promErrorText, completionContext, suggest, seriesName } from '../promql.js';
import { timeRange, readRange, rangeBounds } from '../components/time-range.js';
import { lineChart, seriesColor, formatValue } from '../components/line-chart.js';
import { fullTimeMs } from '../trace-model.js';

const STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
const TARGET_POINTS = 600; // per series when the URL names no step
const MAX_POINTS = 11_000; // Prometheus refuses more per series
const MAX_HIDE_IN_URL = 20; // legend toggles kept in the URL (series names can be long)
const MAX_SERIES_DRAWN = 2000;

/** The view as the URL holds it. */
function readView(search) {
  const p = new URLSearchParams(search);
  return {
    query: p.get('query') || '',
    ...readRange(p),
    step: /^\d+(\.\d+)?$/.test(p.get('step') || '') ? p.get('step') : '',
    view: p.get('view') === 'table' ? 'table' : 'graph',
    stacked: p.get('stacked') === '1',
    // Series toggled off in the legend, by name ('*': all of them).
    hide: p.getAll('hide'),
  };
}

/** Seconds between points: the URL's, or one giving about TARGET_POINTS over the range. */
function pickStep(v, rangeMs) {
  const given = Number(v.step);
  const least = rangeMs / 1000 / MAX_POINTS;
  if (given > 0) return Math.max(given, least);
  const want = rangeMs / 1000 / TARGET_POINTS;
  return STEPS_S.find((s) => s >= want) || Math.ceil(want / 86400) * 86400;
}

/** A query_range matrix as the chart's model: values on the step grid, NaN where none. */
export function matrixModel(result, startMs, stepMs, endMs) {
  const n = Math.floor((endMs - startMs) / stepMs) + 1;
  const series = result.slice(0, MAX_SERIES_DRAWN).map((r, i) => {
    const values = new Float64Array(n).fill(NaN);
    const samples = r.values || [];
    for (let j = 0; j < samples.length; j++) {
      const k = Math.round((samples[j][0] * 1000 - startMs) / stepMs);
      if (k >= 0 && k < n) values[k] = parseSample(samples[j][1]);
    }
    return { name: seriesName(r.metric || {}), labels: r.metric || {}, values, color: seriesColor(i) };
  });
  return { startMs, stepMs, n, series, truncated: result.length - series.length };
}

function parseSample(s) {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  return Number(s);
}

export default {
  title: 'Metrics',
  mount(main, params) {
    let v = readView(params.search);
    let seq = 0; // the query on screen; answers of older ones are dropped
    let model = null;
    const hidden = new Set(); // series indexes toggled off in the legend
    const cache = { names: null, labels: new Map(), values: new Map() };

    // The editor ------------------------------------------------------------------------
    const input = h('textarea', {
      class: 'input mono metrics-input',
      id: 'metrics-query',
      name: 'query',
      rows: '1',
      'data-testid': 'metrics-query',
      placeholder: 'rate(signalbox_gateway_requests_total[5m])   (Enter runs, Shift+Enter breaks the line)',
      spellcheck: 'false',
      autocomplete: 'off',
      'aria-label': 'PromQL query',
      'aria-autocomplete': 'list',
      'aria-controls': 'metrics-suggest',
    });
    const suggestBox = h('ul', { class: 'logs-suggest', id: 'metrics-suggest', role: 'listbox', 'data-testid': 'metrics-suggestions', hidden: true });
    const picker = timeRange({ testid: 'metrics-range', onChange: (r) => navigate(metricsUrl({ ...v, query: input.value.trim(), ...r })) });
    const stepInput = h('input', { class: 'input metrics-step', type: 'number', min: '1', step: 'any', placeholder: 'auto', 'aria-label': 'Resolution in seconds', title: 'Seconds between points (empty: automatic)', 'data-testid': 'metrics-step' });
    stepInput.addEventListener('change', () => navigate(metricsUrl({ ...v, query: input.value.trim(), step: stepInput.value.trim() })));
    const form = h(
      'form',
      { class: 'logs-bar', 'data-testid': 'metrics-form', novalidate: true, onsubmit: (ev) => { ev.preventDefault(); submit(); } },
      h('div', { class: 'logs-input-wrap' }, input, suggestBox),
      picker.el,
      h('label', { class: 'metrics-step-wrap', title: 'Seconds between points' }, 'Step', stepInput),
      h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'metrics-run' }, 'Run'),
    );

    // Results ------------------------------------------------------------------------------
    const errorBox = h('div', { 'data-testid': 'metrics-error-box' });
    const chart = lineChart({ testid: 'metrics-chart', onSelect: (a, b) => navigate(metricsUrl({ ...v, query: input.value.trim(), since: '', start: String(a), end: String(b) })) });
    const graphTab = h('button', { type: 'button', class: 'tab', role: 'tab', 'data-testid': 'metrics-tab-graph', onclick: () => setView('graph') }, 'Graph');
    const tableTab = h('button', { type: 'button', class: 'tab', role: 'tab', 'data-testid': 'metrics-tab-table', onclick: () => setView('table') }, 'Table');
    const stackedBox = h('input', { type: 'checkbox', 'data-testid': 'metrics-stacked', onchange: () => navigate(metricsUrl({ ...v, query: input.value.trim(), stacked: stackedBox.checked }), { replace: true }) });
    const stackedLabel = h('label', { class: 'ts-check metrics-stacked' }, stackedBox, ' Stacked');
    const zoomHint = h('span', { class: 'panel-hint' }, 'Drag across the chart to zoom in');
    const count = h('span', { class: 'panel-count', 'data-testid': 'metrics-count' });
    const status = h('div', { 'data-testid': 'metrics-status' });
    const legend = h('div', { class: 'metrics-legend', 'data-testid': 'metrics-legend' });
    const legendActions = h(
      'div',
      { class: 'metrics-legend-actions' },
      h('button', { type: 'button', class: 'btn btn-sm', 'data-testid': 'metrics-show-all', onclick: () => setAll(false) }, 'Show all'),
      h('button', { type: 'button', class: 'btn btn-sm', 'data-testid': 'metrics-hide-all', onclick: () => setAll(true) }, 'Hide all'),
      h('span', { class: 'panel-hint' }, 'Click an entry to hide or show its series'),
    );
    // The chart's window elsewhere: the logs and traces of the same time (of the query's
    // service when it names one). Dragging across the chart narrows the window first.
    const windowText = h('span', { 'data-testid': 'metrics-window-text' });
    const windowLogs = h('a', { 'data-testid': 'metrics-window-logs' }, 'Logs of this window');
    const windowTraces = h('a', { 'data-testid': 'metrics-window-traces' }, 'Traces of this window');
    const windowBar = h('div', { class: 'chart-window-bar', 'data-testid': 'metrics-window' }, windowText, h('span', { class: 'links' }, windowLogs, windowTraces));
    const graphView = h('div', { class: 'metrics-graph', 'data-testid': 'metrics-graph' }, chart.el, windowBar, legendActions, legend);
    const tableView = h('div', { class: 'metrics-table-wrap table-scroll', 'data-testid': 'metrics-table', hidden: true });
    const panel = h(
      'section',
      { class: 'panel metrics-panel' },
      h('div', { class: 'panel-head' }, h('div', { class: 'tabs', role: 'tablist' }, graphTab, tableTab), count, h('div', { class: 'spacer' }), stackedLabel, zoomHint),
      status,
      graphView,
      tableView,
    );

    setChildren(
      main,
      h('div', { class: 'page-head' }, h('h1', null, 'Metrics'), h('div', { class: 'spacer' }), h('a', { href: alertsUrl(), class: 'btn btn-sm' }, 'Alerts')),
      h('section', { class: 'panel logs-bar-panel' }, form, h('div', { class: 'logs-bar-foot' }, picker.chip, h('span', { class: 'field-hint' }, 'PromQL. Tab or Enter takes a suggestion; Enter runs the query, Shift+Enter starts a new line.'))),
      errorBox,
      panel,
    );

    function setView(view) {
      navigate(metricsUrl({ ...v, query: input.value.trim(), view }), { replace: true });
    }

    function fillForm() {
      if (document.activeElement !== input || input.value.trim() !== v.query) input.value = v.query;
      autosize();
      picker.set(v);
      stepInput.value = v.step;
      stackedBox.checked = v.stacked;
      graphTab.classList.toggle('active', v.view === 'graph');
      graphTab.setAttribute('aria-selected', String(v.view === 'graph'));
      tableTab.classList.toggle('active', v.view === 'table');
      tableTab.setAttribute('aria-selected', String(v.view === 'table'));
      graphView.hidden = v.view !== 'graph';
      tableView.hidden = v.view !== 'table';
      stackedLabel.hidden = v.view !== 'graph';
      zoomHint.hidden = v.view !== 'graph';
      paintWindow();
    }

    function paintWindow() {
      const range = v.start ? { start: v.start, end: v.end } : { since: v.since };
      const service = serviceOfQuery(v.query);
      const urls = windowUrls(range, { service });
      windowLogs.href = urls.logs;
      windowTraces.href = urls.traces;
      windowBar.dataset.selected = v.start ? '1' : '';
      const { startMs, endMs } = rangeBounds(v);
      const what = v.start ? 'Selected window' : `Last ${v.since}`;
      windowText.textContent = `${what}: ${fullTimeMs(startMs)} – ${v.start && !v.end ? 'now' : v.start ? fullTimeMs(endMs) : 'now'}${service ? ` · service ${service}` : ''}`;
    }

    function autosize() {
      input.style.height = 'auto';
      input.style.height = `${Math.min(200, input.scrollHeight + 2)}px`;
    }

    function submit() {
      hideSuggest();
      const next = { ...v, query: input.value.trim() };
      if (metricsUrl(next) === location.pathname + location.search) run();
      else navigate(metricsUrl(next));
    }

    // Running a query ------------------------------------------------------------------------
    async function run() {
      const mine = ++seq;
      errorBox.replaceChildren();
      input.classList.remove('invalid');
      if (!v.query) {
        model = null;
        chart.clear();
        legend.replaceChildren();
        tableView.replaceChildren();
        count.textContent = '';
        setChildren(status, empty('No query yet', 'Type a PromQL expression, e.g. ', h('code', null, 'up'), ' or ', h('code', null, 'rate(signalbox_gateway_requests_total[5m])'), ', and press Enter.'));
        panel.classList.add('idle');
        return;
      }
      panel.classList.remove('idle');
      setChildren(status, h('div', { class: 'empty', 'data-testid': 'metrics-loading' }, 'Running the query…'));
      if (v.view === 'table') await runTable(mine);
      else await runGraph(mine);
    }

    async function runGraph(mine) {
      const now = Date.now();
      const { startMs: s0, endMs } = rangeBounds(v, now);
      const stepS = pickStep(v, endMs - s0);
      const stepMs = Math.round(stepS * 1000);
      const startMs = Math.floor(s0 / stepMs) * stepMs;
      let res;
      try {
        res = await promEnvelope('query_range', { query: v.query, start: (startMs / 1000).toFixed(3), end: (endMs / 1000).toFixed(3), step: String(stepS) });
      } catch (e) {
        if (mine === seq) showError(e);
        return;
      }
      if (mine !== seq) return;
      const t0 = performance.now();
      const data = showWarnings(res);
      status.replaceChildren();
      const result = Array.isArray(data && data.result) ? data.result : [];
      const fresh = matrixModel(result, startMs, stepMs, endMs);
      // Keep legend toggles when the same series come back (a refresh, a new range).
      const sameSeries = model && model.series.length === fresh.series.length && model.series.every((s, i) => s.name === fresh.series[i].name);
      model = fresh;
      applyHide();
      count.textContent = `${plural(result.length, 'series', 'series')} · step ${stepS}s`;
      count.dataset.series = String(result.length);
      if (!result.length) {
        chart.clear();
        legend.replaceChildren();
        setChildren(status, empty('No data', `The query matched no series between ${fullTimeMs(startMs)} and ${fullTimeMs(endMs)}. Widen the range, check the metric and label names (the editor completes them), or see on `, h('a', { href: targetsUrl() }, 'Targets'), ' whether the series is scraped.'));
        return;
      }
      if (model.truncated) status.append(h('div', { class: 'notice notice-warning' }, `Only the first ${MAX_SERIES_DRAWN} of ${result.length} series are drawn.`));
      paintLegend();
      chart.paint(model, { stacked: v.stacked, hidden });
      // How long the answer took to become a chart (model, legend, drawing), for the test.
      panel.dataset.clientMs = (performance.now() - t0).toFixed(1);
    }

    async function runTable(mine) {
      const { endMs } = rangeBounds(v);
      let res;
      try {
        res = await promEnvelope('query', { query: v.query, time: (endMs / 1000).toFixed(3) });
      } catch (e) {
        if (mine === seq) showError(e);
        return;
      }
      if (mine !== seq) return;
      const data = showWarnings(res);
      status.replaceChildren();
      const rows = tableRows(data);
      count.textContent = `${plural(rows.length, 'result')} at ${fullTimeMs(endMs)}`;
      count.dataset.series = String(rows.length);
      if (!rows.length) {
        tableView.replaceChildren();
        setChildren(status, empty('No data', `The query matched no series at ${fullTimeMs(endMs)}. Check the metric and label names, or see on `, h('a', { href: targetsUrl() }, 'Targets'), ' whether the series is scraped.'));
        return;
      }
      setChildren(
        tableView,
        h(
          'table',
          { class: 'table table-hover metrics-table' },
          h('thead', null, h('tr', null, h('th', null, 'Series'), h('th', { class: 'num' }, 'Value'))),
          h(
            'tbody',
            null,
            rows.map((r) => h('tr', { 'data-testid': 'metrics-table-row' }, h('td', { class: 'mono metrics-series-name' }, r.name), h('td', { class: 'num mono', 'data-testid': 'metrics-table-value' }, r.value))),
          ),
        ),
      );
    }

    /** An instant query's result as rows { name, value }. */
    function tableRows(data) {
      if (!data) return [];
      const r = data.result;
      if (data.resultType === 'scalar' || data.resultType === 'string') return [{ name: data.resultType, value: String(r[1]) }];
      if (data.resultType === 'matrix') return r.map((s) => ({ name: seriesName(s.metric || {}), value: (s.values || []).map(([t, x]) => `${x} @${t}`).join('\n') }));
      return (r || []).map((s) => ({ name: seriesName(s.metric || {}), value: s.value ? s.value[1] : s.histogram ? JSON.stringify(s.histogram[1]) : '' }));
    }

    /** Shows the envelope's warnings and infos above the results; returns its data. */
    function showWarnings(res) {
      const notes = [...(Array.isArray(res.warnings) ? res.warnings : []), ...(Array.isArray(res.infos) ? res.infos : [])];
      errorBox.replaceChildren(...notes.map((w) => notice('warning', String(w))));
      return res.data;
    }

    function showError(e) {
      status.replaceChildren();
      model = null;
      chart.clear();
      legend.replaceChildren();
      tableView.replaceChildren();
      count.textContent = '';
      if (e.status === 401) return;
      if (e.status === 400) input.classList.add('invalid');
      setChildren(errorBox, h('div', { class: 'notice notice-error metrics-error', role: 'alert', 'data-testid': 'metrics-error' }, promErrorText(e)));
    }

    // The legend ---------------------------------------------------------------------------
    function paintLegend() {
      setChildren(
        legend,
        model.series.map((s, i) =>
          h(
            'button',
            { type: 'button', class: `metrics-legend-item${hidden.has(i) ? ' off' : ''}`, 'data-testid': 'metrics-legend-item', 'data-index': i, 'aria-pressed': String(!hidden.has(i)), title: s.name },
            h('span', { class: 'swatch', style: { background: s.color } }),
            h('span', { class: 'metrics-legend-name mono' }, s.name),
          ),
        ),
      );
    }

    legend.addEventListener('click', (ev) => {
      const item = ev.target.closest('.metrics-legend-item');
      if (!item || !model) return;
      const i = Number(item.dataset.index);
      if (hidden.has(i)) hidden.delete(i);
      else hidden.add(i);
      item.classList.toggle('off', hidden.has(i));
      item.setAttribute('aria-pressed', String(!hidden.has(i)));
      chart.paint(null, { hidden });
      writeHide();
    });

    function setAll(hide) {
      if (!model) return;
      hidden.clear();
      if (hide) model.series.forEach((_, i) => hidden.add(i));
      paintLegend();
      chart.paint(null, { hidden });
      writeHide();
    }

    /** The legend's toggles from the URL's `hide` names. */
    function applyHide() {
      hidden.clear();
      if (!model || !v.hide.length) return;
      const all = v.hide.includes('*');
      const names = new Set(v.hide);
      model.series.forEach((s, i) => (all || names.has(s.name)) && hidden.add(i));
    }

    /** The toggles into the URL (no new query): names, or '*' for all; not kept beyond
     * MAX_HIDE_IN_URL names, where the URL would grow past what a chat message holds. */
    function writeHide() {
      const names = hidden.size > 1 && hidden.size === model.series.length ? ['*'] : Array.from(hidden, (i) => model.series[i].name);
      navigate(metricsUrl({ ...v, hide: names.length <= MAX_HIDE_IN_URL ? names : [] }), { replace: true });
    }

    // Completion -----------------------------------------------------------------------------
    const source = {
      async metricNames() {
        if (!cache.names) cache.names = prom('label/__name__/values').catch(() => ((cache.names = null), []));
        return (await cache.names) || [];
      },
      async labelNames(metric) {
        const key = metric || '';
        if (!cache.labels.has(key)) {
          const p = new URLSearchParams();
          if (metric) p.set('match[]', metric);
          cache.labels.set(key, prom('labels', p).catch(() => (cache.labels.delete(key), [])));
        }
        return (await cache.labels.get(key)) || [];
      },
      async labelValues(label, metric) {
        const key = `${label}\u0000${metric || ''}`;
        if (!cache.values.has(key)) {
          const p = new URLSearchParams();
          if (metric) p.set('match[]', metric);
          cache.values.set(key, prom(`label/${encodeURIComponent(label)}/values`, p).catch(() => (cache.values.delete(key), [])));
        }
        return (await cache.values.get(key)) || [];
      },
    };

    let suggestions = [];
    let active = -1;
    let suggestCtx = null;
    let suggestSeq = 0;

    async function showSuggest() {
      const mine = ++suggestSeq;
      const caret = input.selectionStart ?? input.value.length;
      const ctx = completionContext(input.value, caret);
      const list = await suggest(ctx, source);
      if (mine !== suggestSeq) return;
      suggestions = list;
      suggestCtx = ctx;
      active = -1;
      if (!list.length || document.activeElement !== input) {
        hideSuggest();
        return;
      }
      setChildren(
        suggestBox,
        list.map((s, i) =>
          h(
            'li',
            { role: 'option', class: `logs-sugg logs-sugg-${s.kind}`, 'data-testid': 'metrics-suggestion', 'data-value': s.label, 'data-kind': s.kind, onmousedown: (ev) => { ev.preventDefault(); accept(i); } },
            s.label,
            h('span', { class: 'logs-sugg-kind' }, s.kind),
          ),
        ),
      );
      suggestBox.hidden = false;
    }

    function hideSuggest() {
      suggestSeq++;
      suggestBox.hidden = true;
      suggestions = [];
      active = -1;
    }

    function accept(i) {
      const s = suggestions[i];
      if (!s || !suggestCtx) return;
      const val = input.value;
      const caret = input.selectionStart ?? val.length;
      // A value replaces through its closing quote when the caret sits before one.
      let end = caret;
      while (end < val.length && /[A-Za-z0-9_:]/.test(val[end])) end++;
      if (s.kind === 'value' && val[end] === suggestCtx.quote) end++;
      input.value = val.slice(0, suggestCtx.from) + s.insert + val.slice(end);
      const at = suggestCtx.from + s.insert.length;
      input.setSelectionRange(at, at);
      input.focus();
      autosize();
      if (s.kind === 'value' || s.kind === 'metric') hideSuggest();
      else showSuggest();
    }

    function markActive() {
      Array.from(suggestBox.children).forEach((li, i) => li.classList.toggle('active', i === active));
    }

    input.addEventListener('input', () => {
      input.classList.remove('invalid');
      autosize();
      showSuggest();
    });
    input.addEventListener('blur', () => setTimeout(hideSuggest, 100));
    input.addEventListener('keydown', (ev) => {
      const open = !suggestBox.hidden && suggestions.length;
      if (open && (ev.key === 'ArrowDown' || ev.key === 'ArrowUp')) {
        ev.preventDefault();
        const n = suggestions.length;
        active = ev.key === 'ArrowDown' ? (active + 1) % n : (active - 1 + n) % n;
        markActive();
      } else if (open && (ev.key === 'Enter' || ev.key === 'Tab') && active >= 0) {
        ev.preventDefault();
        accept(active);
      } else if (open && ev.key === 'Tab' && suggestions.length === 1) {
        ev.preventDefault();
        accept(0);
      } else if (open && ev.key === 'Escape') {
        hideSuggest();
      } else if (ev.key === 'Enter' && !ev.shiftKey) {
        ev.preventDefault();
        submit();
      }
    });

    // Start ---------------------------------------------------------------------------------
    let lastKey = '';
    function apply(search) {
      v = readView(search);
      fillForm();
      const key = JSON.stringify([v.query, v.since, v.start, v.end, v.step, v.view]);
      if (key === lastKey) {
        // Only the stacking or the legend's toggles changed: repaint, no new query.
        if (model && v.view === 'graph') {
          applyHide();
          paintLegend();
          chart.paint(null, { stacked: v.stacked, hidden });
        }
        return;
      }
      lastKey = key;
      run();
    }

    apply(params.search);
    source.metricNames(); // warm the cache for the first keystroke

    return {
      update(p) {
        apply(p.search);
      },
      unmount() {
        seq++;
        suggestSeq++;
        chart.destroy();
      },
    };
  },
};
