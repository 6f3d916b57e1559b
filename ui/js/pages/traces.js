// Traces (/traces): the search form, a scatter plot of duration over time and the result
// list. The form lives in the URL (/traces?service=&operation=&tag=k=v&minDuration=
// &maxDuration=&lookback=|start=&end=&limit=&errors=1&sort=longest), so a search is a deep link and runs
// when the page opens with parameters. One trace opens at /traces/{id} (trace.js).

import { h, setChildren, empty, notice, ago, plural } from '../dom.js';
import { api, seg } from '../api.js';
import { navigate } from '../router.js';
import { parseClockInput, clockInputValue, lastRange } from '../prefs.js';
import { traceUrl } from '../links.js';
import { fmtDur, parseDuration, parseTags, formatTags, serviceColor, primeColors, fullTimeMs, ticks, niceStep, timeTicks, clockLabel } from '../trace-model.js';

const LOOKBACKS = [
  ['5m', 'Last 5 minutes'],
  ['15m', 'Last 15 minutes'],
  ['30m', 'Last 30 minutes'],
  ['1h', 'Last hour'],
  ['2h', 'Last 2 hours'],
  ['6h', 'Last 6 hours'],
  ['12h', 'Last 12 hours'],
  ['1d', 'Last 24 hours'],
  ['2d', 'Last 2 days'],
  ['7d', 'Last 7 days'],
  ['custom', 'Custom range…'],
];
const DEFAULT_LOOKBACK = '1h';
const DEFAULT_LIMIT = '20';
const SORTS = ['recent', 'longest', 'shortest', 'spans'];
const SEARCH_KEYS = ['service', 'operation', 'tag', 'minDuration', 'maxDuration', 'lookback', 'start', 'end', 'limit', 'errors'];

/** The last search (page URL), for the trace view's way back. */
export let lastSearch = '/traces';

// The last results, so that coming back from a trace shows them without a new search.
let cache = null; // { key, result }

/** The search as the URL holds it. `tags` are raw `k=v` strings (the API checks them). */
function readQuery(search) {
  const p = new URLSearchParams(search);
  const given = SEARCH_KEYS.some((k) => p.has(k));
  // An empty form starts on the range the other pages showed last (prefs.js), without
  // running a search: the URL only says "search" once the person submits.
  const shared = given ? null : lastRange();
  const start = p.get('start') || (shared && shared.start) || '';
  const end = p.get('end') || (shared && shared.start ? shared.end : '') || '';
  return {
    service: p.get('service') || '',
    operation: p.get('operation') || '',
    tags: p.getAll('tag').filter((t) => t !== ''),
    minDuration: p.get('minDuration') || '',
    maxDuration: p.get('maxDuration') || '',
    lookback: start || end ? 'custom' : p.get('lookback') || (shared && shared.since) || DEFAULT_LOOKBACK,
    start,
    end,
    limit: p.get('limit') || DEFAULT_LIMIT,
    errors: ['1', 'true'].includes(p.get('errors')),
    sort: SORTS.includes(p.get('sort')) ? p.get('sort') : 'recent',
    given,
  };
}

/** A search as query parameters: the page's own URL (`api` false) or the search API's. */
function encodeQuery(q, api) {
  const p = new URLSearchParams();
  if (q.service) p.set('service', q.service);
  if (q.operation) p.set('operation', q.operation);
  for (const t of q.tags) p.append('tag', t);
  if (q.minDuration) p.set(api ? 'min_duration' : 'minDuration', q.minDuration);
  if (q.maxDuration) p.set(api ? 'max_duration' : 'maxDuration', q.maxDuration);
  if (q.lookback === 'custom') {
    if (q.start) p.set('start', q.start);
    if (q.end) p.set('end', q.end);
  } else {
    p.set('lookback', q.lookback);
  }
  p.set('limit', q.limit);
  if (q.errors) {
    if (api) p.set('status', 'error');
    else p.set('errors', '1');
  }
  // The list's order is the page's state, not the search's.
  if (!api && q.sort && q.sort !== 'recent') p.set('sort', q.sort);
  return p;
}

function pageQuery(q) {
  return encodeQuery(q, false).toString();
}

function apiQuery(q) {
  return `/api/traces?${encodeQuery(q, true)}`;
}

/** Unix ms <-> the value of a datetime-local input (local time). */
const toLocalInput = clockInputValue;

// The API's field names -> the form's.
const API_FIELDS = { service: 'service', operation: 'operation', tag: 'tags', min_duration: 'minDuration', max_duration: 'maxDuration', lookback: 'lookback', start: 'start', end: 'end', limit: 'limit', status: 'errors' };

export default {
  title: 'Traces',
  mount(main, params) {
    let q = readQuery(params.search);
    let seq = 0; // the search on screen; answers of older ones are dropped
    let result = null; // { traces, start_unix_nanos, end_unix_nanos, limit }
    let sortBy = 'recent';
    let resizeObs = null;

    // The form -------------------------------------------------------------------------
    const inputs = {
      service: h('select', { class: 'input', id: 'ts-service', name: 'service', 'data-testid': 'traces-service' }),
      operation: h('select', { class: 'input', id: 'ts-operation', name: 'operation', 'data-testid': 'traces-operation' }),
      tags: h('input', { class: 'input mono', id: 'ts-tags', name: 'tags', 'data-testid': 'traces-tags', placeholder: 'http.status_code=500 user.tier=gold', spellcheck: 'false', autocomplete: 'off' }),
      minDuration: h('input', { class: 'input', id: 'ts-min', name: 'minDuration', 'data-testid': 'traces-min-duration', placeholder: 'e.g. 120ms', spellcheck: 'false', autocomplete: 'off' }),
      maxDuration: h('input', { class: 'input', id: 'ts-max', name: 'maxDuration', 'data-testid': 'traces-max-duration', placeholder: 'e.g. 1.5s', spellcheck: 'false', autocomplete: 'off' }),
      lookback: h('select', { class: 'input', id: 'ts-lookback', name: 'lookback', 'data-testid': 'traces-lookback' }, LOOKBACKS.map(([v, label]) => h('option', { value: v }, label))),
      start: h('input', { class: 'input', type: 'datetime-local', step: '1', id: 'ts-start', name: 'start', 'data-testid': 'traces-start' }),
      end: h('input', { class: 'input', type: 'datetime-local', step: '1', id: 'ts-end', name: 'end', 'data-testid': 'traces-end' }),
      limit: h('input', { class: 'input', type: 'number', min: '1', max: '10000', id: 'ts-limit', name: 'limit', 'data-testid': 'traces-limit' }),
      errors: h('input', { type: 'checkbox', id: 'ts-errors', name: 'errors', 'data-testid': 'traces-errors' }),
    };
    const hints = {};
    const field = (key, label, hint) => {
      hints[key] = h('span', { class: 'field-error', 'data-testid': `traces-${key}-error`, role: 'alert' });
      return h('div', { class: 'field' }, h('label', { class: 'field-label', for: inputs[key].id }, label), inputs[key], hint ? h('span', { class: 'field-hint' }, hint) : null, hints[key]);
    };
    const customRange = h('div', { class: 'ts-custom' }, field('start', 'From'), field('end', 'To'));
    const formError = h('div');
    const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block', 'data-testid': 'traces-search' }, 'Find traces');
    const form = h(
      'form',
      { class: 'form ts-form', 'data-testid': 'traces-form', novalidate: true, onsubmit: onSubmit },
      field('service', 'Service'),
      field('operation', 'Operation'),
      field('tags', 'Tags', 'key=value, space separated; quote values with spaces'),
      h('div', { class: 'ts-pair' }, field('minDuration', 'Min duration'), field('maxDuration', 'Max duration')),
      field('lookback', 'Time range'),
      customRange,
      field('limit', 'Limit'),
      h('label', { class: 'ts-check', title: 'Traces where a span failed; with a service, a span of that service' }, inputs.errors, ' Errors only'),
      formError,
      h('div', { class: 'form-actions' }, submit),
    );
    inputs.service.addEventListener('change', () => loadOperations(inputs.service.value, ''));
    inputs.lookback.addEventListener('change', () => {
      customRange.hidden = inputs.lookback.value !== 'custom';
      if (!customRange.hidden && !inputs.start.value) {
        const now = Date.now();
        inputs.start.value = toLocalInput(now - 3600e3);
        inputs.end.value = toLocalInput(now);
      }
    });

    // Trace id lookup.
    const idInput = h('input', { class: 'input input-sm mono', placeholder: 'Trace ID', 'aria-label': 'Trace ID', 'data-testid': 'traces-lookup-id', spellcheck: 'false', autocomplete: 'off' });
    const lookup = h(
      'form',
      {
        class: 'ts-lookup',
        onsubmit: (ev) => {
          ev.preventDefault();
          const id = idInput.value.trim();
          if (id) navigate(traceUrl(id));
        },
      },
      idInput,
      h('button', { type: 'submit', class: 'btn btn-sm', 'data-testid': 'traces-lookup' }, 'Open'),
    );

    // Results --------------------------------------------------------------------------
    const plot = h('div', { class: 'ts-plot', 'data-testid': 'traces-scatter' });
    const plotPanel = h('section', { class: 'panel', hidden: true }, h('div', { class: 'panel-head' }, h('h2', null, 'Duration over time'), h('span', { class: 'panel-hint' }, 'Click a point to open its trace')), plot);
    const count = h('span', { class: 'panel-count', 'data-testid': 'traces-count' });
    const sortSel = h(
      'select',
      {
        class: 'input input-xs',
        'aria-label': 'Sort results',
        'data-testid': 'traces-sort',
        onchange: () => {
          sortBy = sortSel.value;
          q.sort = sortBy;
          paintList();
          // In the URL (a pasted link keeps the order) without a new search or history entry.
          if (q.given) {
            lastSearch = `/traces?${pageQuery(q)}`;
            if (cache) cache.key = pageQuery(q);
            history.replaceState(null, '', lastSearch);
          }
        },
      },
      h('option', { value: 'recent' }, 'Most recent'),
      h('option', { value: 'longest' }, 'Longest first'),
      h('option', { value: 'shortest' }, 'Shortest first'),
      h('option', { value: 'spans' }, 'Most spans'),
    );
    const list = h('div', { class: 'ts-list', 'data-testid': 'traces-results' });
    const status = h('div', { 'data-testid': 'traces-status' });
    const listPanel = h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', null, 'Traces'), count, h('div', { class: 'spacer' }), sortSel), status, list);

    setChildren(
      main,
      h('div', { class: 'page-head' }, h('h1', null, 'Traces'), h('div', { class: 'spacer' }), lookup),
      h(
        'div',
        { class: 'traces-layout' },
        h('aside', { class: 'panel ts-form-panel' }, h('div', { class: 'panel-head' }, h('h2', null, 'Search')), form),
        h('div', { class: 'ts-results' }, plotPanel, listPanel),
      ),
    );

    // Services and operations ------------------------------------------------------------
    function setOptions(select, values, selected, allLabel) {
      const opts = [h('option', { value: '' }, allLabel)];
      const seen = new Set(values);
      if (selected && !seen.has(selected)) opts.push(h('option', { value: selected }, selected));
      for (const v of values) opts.push(h('option', { value: v }, v));
      setChildren(select, opts);
      select.value = selected || '';
    }

    let opSeq = 0;
    function loadOperations(service, selected) {
      const mine = ++opSeq;
      setOptions(inputs.operation, [], selected, 'All operations');
      inputs.operation.disabled = !service;
      if (!service) return;
      api('GET', `/api/traces/services/${seg(service)}/operations`)
        .then((r) => {
          if (mine === opSeq) setOptions(inputs.operation, r.operations || [], inputs.operation.value || selected, 'All operations');
        })
        .catch((e) => e.status !== 401 && mine === opSeq && showFieldError('operation', `Could not load operations: ${e.message}`));
    }

    let serviceList = [];
    function loadServices() {
      setOptions(inputs.service, serviceList, q.service, 'All services');
      api('GET', '/api/traces/services')
        .then((r) => {
          serviceList = r.services || [];
          setOptions(inputs.service, serviceList, inputs.service.value || q.service, 'All services');
        })
        .catch((e) => e.status !== 401 && showFieldError('service', `Could not load services: ${e.message}`));
    }

    function fillForm() {
      setOptions(inputs.service, serviceList, q.service, 'All services');
      loadOperations(q.service, q.operation);
      inputs.tags.value = formatTags(q.tags.map((t) => (t.includes('=') ? [t.slice(0, t.indexOf('=')), t.slice(t.indexOf('=') + 1)] : [t, ''])));
      inputs.minDuration.value = q.minDuration;
      inputs.maxDuration.value = q.maxDuration;
      if (!Array.from(inputs.lookback.options).some((o) => o.value === q.lookback)) {
        // A lookback that is not a preset (from a hand-written URL): keep it selectable.
        inputs.lookback.insertBefore(h('option', { value: q.lookback }, `Last ${q.lookback}`), inputs.lookback.lastChild);
      }
      inputs.lookback.value = q.lookback;
      inputs.start.value = toLocalInput(q.start);
      inputs.end.value = toLocalInput(q.end);
      customRange.hidden = q.lookback !== 'custom';
      inputs.limit.value = q.limit;
      inputs.errors.checked = q.errors;
      clearErrors();
    }

    function clearErrors() {
      for (const [k, el] of Object.entries(hints)) {
        el.textContent = '';
        inputs[k].classList.remove('invalid');
        inputs[k].removeAttribute('aria-invalid');
      }
      formError.replaceChildren();
    }

    function showFieldError(key, msg) {
      if (!hints[key]) return;
      hints[key].textContent = msg;
      inputs[key].classList.add('invalid');
      inputs[key].setAttribute('aria-invalid', 'true');
    }

    function onSubmit(ev) {
      ev.preventDefault();
      clearErrors();
      const next = {
        service: inputs.service.value,
        operation: inputs.service.value ? inputs.operation.value : '',
        tags: [],
        minDuration: inputs.minDuration.value.trim(),
        maxDuration: inputs.maxDuration.value.trim(),
        lookback: inputs.lookback.value,
        start: '',
        end: '',
        limit: inputs.limit.value.trim() || DEFAULT_LIMIT,
        errors: inputs.errors.checked,
        sort: sortBy,
      };
      let ok = true;
      const parsed = parseTags(inputs.tags.value);
      if (parsed.error) {
        showFieldError('tags', parsed.error);
        ok = false;
      } else {
        next.tags = parsed.tags.map(([k, v]) => `${k}=${v}`);
      }
      for (const k of ['minDuration', 'maxDuration']) {
        if (next[k] && parseDuration(next[k]) === null) {
          showFieldError(k, 'A duration with a unit: 250us, 120ms, 1.5s, 2m');
          ok = false;
        }
      }
      if (ok && next.minDuration && next.maxDuration && parseDuration(next.minDuration) > parseDuration(next.maxDuration)) {
        showFieldError('maxDuration', 'Must not be below the minimum');
        ok = false;
      }
      if (next.lookback === 'custom') {
        const s = parseClockInput(inputs.start.value);
        const e = parseClockInput(inputs.end.value);
        if (!Number.isFinite(s)) {
          showFieldError('start', 'Choose when the range starts');
          ok = false;
        }
        if (inputs.end.value && !Number.isFinite(e)) {
          showFieldError('end', 'Not a valid time');
          ok = false;
        }
        if (Number.isFinite(s) && Number.isFinite(e) && s > e) {
          showFieldError('end', 'Must be after the start');
          ok = false;
        }
        next.start = Number.isFinite(s) ? String(s) : '';
        next.end = Number.isFinite(e) ? String(e) : '';
      }
      const lim = Number(next.limit);
      if (!Number.isInteger(lim) || lim < 1 || lim > 10000) {
        showFieldError('limit', 'A whole number from 1 to 10000');
        ok = false;
      }
      if (!ok) return;
      // Always at least lookback and limit: the URL then says "search", and runs on load.
      navigate(`/traces?${pageQuery(next)}`);
    }

    // Search -----------------------------------------------------------------------------
    function setBusy(busy) {
      submit.disabled = busy;
      submit.textContent = busy ? 'Searching…' : 'Find traces';
      if (busy) list.setAttribute('aria-busy', 'true');
      else list.removeAttribute('aria-busy');
      plot.classList.toggle('stale', busy);
      list.classList.toggle('stale', busy);
    }

    function runSearch() {
      const key = pageQuery(q);
      lastSearch = `/traces?${key}`;
      const mine = ++seq;
      setBusy(true);
      setChildren(status, h('div', { class: 'empty', 'data-testid': 'traces-loading' }, 'Searching…'));
      api('GET', apiQuery(q))
        .then((r) => {
          if (mine !== seq) return;
          result = r;
          cache = { key, result };
          show();
        })
        .catch((e) => {
          if (mine !== seq || e.status === 401) return;
          result = null;
          list.replaceChildren();
          plotPanel.hidden = true;
          count.textContent = '';
          if (e.field && API_FIELDS[e.field]) showFieldError(API_FIELDS[e.field], e.message.replace(`${e.field}: `, ''));
          setChildren(status, h('div', { 'data-testid': 'traces-error' }, notice('error', `The search failed: ${e.message}`)));
        })
        .finally(() => {
          if (mine === seq) setBusy(false);
        });
    }

    function show() {
      const traces = result.traces || [];
      count.textContent = traces.length >= Number(result.limit) ? `${plural(traces.length, 'trace')} (the limit)` : plural(traces.length, 'trace');
      if (!traces.length) {
        plotPanel.hidden = true;
        list.replaceChildren();
        setChildren(
          status,
          h(
            'div',
            { 'data-testid': 'traces-empty' },
            empty('No traces match', `Nothing between ${fullTimeMs(result.start_unix_nanos / 1e6)} and ${fullTimeMs(result.end_unix_nanos / 1e6)}. Widen the time range or remove a condition.`),
          ),
        );
        return;
      }
      status.replaceChildren();
      primeColors(new Set(traces.flatMap(traceServices)));
      plotPanel.hidden = false;
      paintPlot();
      paintList();
    }

    function showIdle() {
      // A search still on its way must not replace the idle page when it answers.
      seq++;
      setBusy(false);
      result = null;
      plotPanel.hidden = true;
      list.replaceChildren();
      count.textContent = '';
      setChildren(
        status,
        h('div', { 'data-testid': 'traces-idle' }, empty('Search for traces', 'Choose a service, add tags or a duration, then Find traces. Traces reach the search a few seconds after their last span (tail sampling waits for the trace to end).')),
      );
    }

    function sorted() {
      const t = [...(result.traces || [])];
      if (sortBy === 'longest') t.sort((a, b) => b.duration_nanos - a.duration_nanos);
      else if (sortBy === 'shortest') t.sort((a, b) => a.duration_nanos - b.duration_nanos);
      else if (sortBy === 'spans') t.sort((a, b) => b.span_count - a.span_count);
      else t.sort((a, b) => b.start_unix_nanos - a.start_unix_nanos);
      return t;
    }

    function paintList() {
      if (!result) return;
      const traces = sorted();
      const maxDur = Math.max(1, ...traces.map((t) => t.duration_nanos));
      setChildren(list, traces.map((t) => resultItem(t, maxDur)));
    }

    function resultItem(t, maxDur) {
      const startMs = t.start_unix_nanos / 1e6;
      const counts = spanCounts(t);
      const failed = isFailed(t);
      const errorSpans = errorCount(t);
      return h(
        'a',
        {
          class: `ts-item${failed ? ' is-error' : ''}`,
          href: traceUrl(t.trace_id),
          'data-testid': 'trace-result',
          'data-trace-id': t.trace_id,
          'data-error': String(failed),
          onmouseenter: () => hover(t.trace_id, true),
          onmouseleave: () => hover(t.trace_id, false),
          onfocus: () => hover(t.trace_id, true),
          onblur: () => hover(t.trace_id, false),
        },
        h(
          'div',
          { class: 'ts-item-head' },
          h('span', { class: 'ts-item-title', 'data-testid': 'trace-result-title' }, h('span', { class: 'ts-svc', style: { color: serviceColor(t.root_service) } }, t.root_service || 'unknown'), ': ', t.root_operation || '(no name)'),
          h('span', { class: 'ts-item-id mono', title: t.trace_id }, t.trace_id.slice(0, 8)),
          h('span', { class: 'spacer' }),
          h('span', { class: 'ts-item-dur', 'data-testid': 'trace-result-duration' }, fmtDur(t.duration_nanos)),
        ),
        h('div', { class: 'ts-item-bar' }, h('span', { style: { width: `${Math.max(0.5, (100 * t.duration_nanos) / maxDur)}%` } })),
        h(
          'div',
          { class: 'ts-item-meta' },
          failed
            ? h(
                'span',
                { class: 'badge status-critical', 'data-testid': 'trace-result-errors', 'data-count': errorSpans ?? null, title: errorSpans ? `${plural(errorSpans, 'span')} failed` : 'A span failed' },
                errorSpans ? plural(errorSpans, 'error') : 'error',
              )
            : null,
          h('span', { class: 'ts-spans', 'data-testid': 'trace-result-spans' }, plural(t.span_count, 'span')),
          h(
            'span',
            { class: 'ts-svcs' },
            traceServices(t).map((s) =>
              h(
                'span',
                { class: 'svc-badge', 'data-service': s, 'data-testid': 'trace-result-service', title: counts && counts[s] !== undefined ? `${plural(counts[s], 'span')} of ${s} in this trace` : `${s} has spans in this trace` },
                h('span', { class: 'svc-dot', style: { background: serviceColor(s) } }),
                s,
                h('span', { class: 'svc-count' }, counts && counts[s] !== undefined ? String(counts[s]) : ''),
              ),
            ),
          ),
          h('time', { class: 'ts-when', datetime: new Date(startMs).toISOString(), title: fullTimeMs(startMs) }, ago(startMs), h('span', { class: 'ts-abs' }, fullTimeMs(startMs))),
        ),
      );
    }

    function hover(id, on) {
      const sel = `[data-trace-id="${CSS.escape(id)}"]`;
      for (const el of main.querySelectorAll(`.ts-item${sel}, .ts-point${sel}`)) el.classList.toggle('hover', on);
    }

    // The scatter plot ---------------------------------------------------------------------
    function paintPlot() {
      const traces = result.traces || [];
      const W = Math.max(320, plot.clientWidth || 700);
      const H = 190;
      const M = { l: 58, r: 14, t: 12, b: 26 };
      const iw = W - M.l - M.r;
      const ih = H - M.t - M.b;
      const xs = traces.map((t) => t.start_unix_nanos / 1e6);
      let x0 = Math.min(...xs);
      let x1 = Math.max(...xs);
      if (x1 - x0 < 1000) {
        x0 -= 500;
        x1 += 500;
      }
      const pad = (x1 - x0) * 0.03;
      x0 -= pad;
      x1 += pad;
      const maxDur = Math.max(...traces.map((t) => t.duration_nanos), 1000);
      const yStep = niceStep(maxDur, 4);
      const yMax = Math.ceil(maxDur / yStep) * yStep;
      const yt = ticks(yMax, Math.round(yMax / yStep));
      const X = (ms) => M.l + ((ms - x0) / (x1 - x0)) * iw;
      const Y = (ns) => M.t + ih - (ns / yMax) * ih;
      const parts = [];
      for (const v of yt) {
        parts.push(svg('line', { x1: M.l, x2: W - M.r, y1: Y(v), y2: Y(v), class: 'ts-grid' }));
        parts.push(svg('text', { x: M.l - 6, y: Y(v) + 4, class: 'ts-axis-label', 'text-anchor': 'end' }, fmtDur(v)));
      }
      const tt = timeTicks(x0, x1, Math.max(2, Math.floor(iw / 110)));
      for (const v of tt.ticks) {
        parts.push(svg('line', { x1: X(v), x2: X(v), y1: M.t + ih, y2: M.t + ih + 4, class: 'ts-tick' }));
        const x = X(v);
        const anchor = x > W - M.r - 24 ? 'end' : x < M.l + 24 ? 'start' : 'middle';
        parts.push(svg('text', { x, y: H - 8, class: 'ts-axis-label', 'text-anchor': anchor }, clockLabel(v, tt.step)));
      }
      parts.push(svg('line', { x1: M.l, x2: W - M.r, y1: M.t + ih, y2: M.t + ih, class: 'ts-axis' }));
      // Errors last, so they sit on top.
      const order = [...traces].sort((a, b) => isFailed(a) - isFailed(b));
      for (const t of order) {
        const failed = isFailed(t);
        const errorSpans = errorCount(t);
        const r = Math.min(11, 3.5 + Math.log2(Math.max(1, t.span_count)) * 1.1);
        const label = `${t.root_service || 'unknown'}: ${t.root_operation || '(no name)'} · ${fmtDur(t.duration_nanos)} · ${plural(t.span_count, 'span')}${failed ? ` · ${errorSpans ? plural(errorSpans, 'error') : 'error'}` : ''} · ${fullTimeMs(t.start_unix_nanos / 1e6)}`;
        const open = () => navigate(traceUrl(t.trace_id));
        parts.push(
          svg(
            'circle',
            {
              cx: X(t.start_unix_nanos / 1e6).toFixed(1),
              cy: Y(t.duration_nanos).toFixed(1),
              r: r.toFixed(1),
              class: `ts-point${failed ? ' is-error' : ''}`,
              tabindex: '0',
              role: 'link',
              'aria-label': label,
              'data-testid': 'scatter-point',
              'data-trace-id': t.trace_id,
              'data-error': String(failed),
              onclick: open,
              onkeydown: (ev) => {
                if (ev.key === 'Enter' || ev.key === ' ') {
                  ev.preventDefault();
                  open();
                }
              },
              onmouseenter: () => hover(t.trace_id, true),
              onmouseleave: () => hover(t.trace_id, false),
            },
            svg('title', null, label),
          ),
        );
      }
      const el = svg('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'ts-svg', role: 'img', 'aria-label': `Duration over time of ${plural(traces.length, 'trace')}` }, parts);
      setChildren(plot, el);
    }

    if (typeof ResizeObserver === 'function') {
      let lastW = 0;
      resizeObs = new ResizeObserver(() => {
        const w = plot.clientWidth;
        if (result && result.traces && result.traces.length && Math.abs(w - lastW) > 8) paintPlot();
        lastW = w;
      });
      resizeObs.observe(plot);
    }

    // Start ------------------------------------------------------------------------------
    function apply(queryString) {
      q = readQuery(queryString);
      sortBy = q.sort;
      sortSel.value = q.sort;
      fillForm();
      if (!q.given) {
        showIdle();
        return;
      }
      const key = pageQuery(q);
      if (cache && cache.key === key && !result) {
        // Back from a trace: the same results, no new search.
        lastSearch = `/traces?${key}`;
        result = cache.result;
        show();
        return;
      }
      runSearch();
    }

    loadServices();
    apply(params.search);

    return {
      update(p) {
        result = null;
        cache = null; // a navigation to /traces?... always searches again
        apply(p.search);
      },
      unmount() {
        seq++;
        opSeq++;
        if (resizeObs) resizeObs.disconnect();
      },
    };
  },
};

// A search summary: trace_id, root_service, root_operation, start_unix_nanos, duration_nanos,
// span_count, services, service_spans {service: spans}, error, error_spans. The counts come
// with every summary of this node; the helpers below keep the list usable without them (the
// badges then show no numbers) rather than reading each trace.

/** Spans per service ({service: n}), or null when the summary has none. */
function spanCounts(t) {
  return t.service_spans && typeof t.service_spans === 'object' ? t.service_spans : null;
}

/** The trace's services, in the summary's order. */
function traceServices(t) {
  if (Array.isArray(t.services)) return t.services;
  const counts = spanCounts(t);
  return counts ? Object.keys(counts) : [];
}

/** The number of failed spans, or null when the summary does not say. */
function errorCount(t) {
  return Number.isInteger(t.error_spans) ? t.error_spans : null;
}

function isFailed(t) {
  return !!t.error || errorCount(t) > 0;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An SVG element; attributes as h() takes them (on<event> listeners, the rest attributes). */
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
