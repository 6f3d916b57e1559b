// Logs (/logs): a query bar with field and value suggestions, a histogram of matches over
// time (drag across it to zoom in), and the matching lines newest first. The view lives in
// the URL (/logs?query=&since=1h|start=&end=&limit=&line=), so a pasted link reopens it;
// `start`/`end` are Unix ms, `line` the unix_nanos of the expanded line. A live tail
// (/api/logs/tail) prepends new lines, keeping at most MAX_LINES.
//
// Lines render in chunks as the list scrolls into view, so 10,000 results stay responsive.

import { h, setChildren, empty, notice } from '../dom.js';
import { api } from '../api.js';
import { navigate } from '../router.js';
import { logsUrl, traceUrl, traceLogsUrl } from '../links.js';
import { fullTimeMs, clockTimeMs, sortedEntries } from '../trace-model.js';
import { histogram } from '../components/histogram.js';
import { timeRange, DEFAULT_SINCE } from '../components/time-range.js';

const LIMITS = ['100', '1000', '10000'];
const DEFAULT_LIMIT = '1000';
const MAX_LINES = 10_000; // kept while tailing
const CHUNK = 200; // lines rendered per step
const CONTEXT = 5;
const BASE_FIELDS = ['service', 'level', 'instance', 'trace_id', 'span_id', 'body'];
const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
const STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

/** The view as the URL holds it. */
function readView(search) {
  const p = new URLSearchParams(search);
  const start = p.get('start') || '';
  const end = p.get('end') || '';
  return {
    query: p.get('query') || '',
    since: start ? '' : p.get('since') || DEFAULT_SINCE,
    start,
    end,
    limit: p.get('limit') || DEFAULT_LIMIT,
    line: p.get('line') || '',
  };
}

/** What a search depends on (the expanded line is not part of it). */
const searchKey = (v) => JSON.stringify([v.query, v.since, v.start, v.end, v.limit]);

function rangeParams(v, p) {
  if (v.start) {
    p.set('start', v.start);
    if (v.end) p.set('end', v.end);
  } else {
    p.set('since', v.since);
  }
  return p;
}

/** Unix ms of a record (unix_nanos is a string: nanoseconds exceed 2^53). */
function recordMs(r) {
  const ns = String(r.unix_nanos || '');
  return ns.length > 6 ? Number(ns.slice(0, -6)) : 0;
}

function sevClass(r) {
  const n = Number(r.severity_number) || 0;
  if (n === 0) return 'unset';
  if (n <= 4) return 'trace';
  if (n <= 8) return 'debug';
  if (n <= 12) return 'info';
  if (n <= 16) return 'warn';
  if (n <= 20) return 'error';
  return 'fatal';
}

const clock = clockTimeMs;

// Highlights are byte ranges into the UTF-8 body; for ASCII bodies bytes are characters.
// Other bodies are shown without marks rather than with misplaced ones.
const ASCII = /^[\x00-\x7f]*$/;

/** The body as nodes, the highlighted ranges in <mark>. */
export function bodyNodes(body, ranges) {
  const text = String(body ?? '');
  if (!Array.isArray(ranges) || !ranges.length || !ASCII.test(text)) return [text];
  const sorted = ranges.filter((r) => Array.isArray(r) && r[1] > r[0]).sort((a, b) => a[0] - b[0]);
  const out = [];
  let at = 0;
  for (const [s0, e0] of sorted) {
    const s = Math.max(at, Math.min(s0, text.length));
    const e = Math.min(e0, text.length);
    if (e <= s) continue;
    if (s > at) out.push(text.slice(at, s));
    out.push(h('mark', { class: 'log-hl', 'data-testid': 'log-highlight' }, text.slice(s, e)));
    at = e;
  }
  if (at < text.length) out.push(text.slice(at));
  return out;
}

/**
 * The words and phrases of a query that mark a body (as the node does for a search): not
 * field tests, negations, wildcards or operators. For tailed lines, which come unmarked.
 */
export function queryTerms(query) {
  const out = [];
  const re = /(-?)("([^"]*)"|[^\s()"]+)/g;
  let m;
  while ((m = re.exec(query || ''))) {
    if (m[1]) continue;
    if (m[3] !== undefined) {
      if (m[3]) out.push(m[3].toLowerCase());
    } else if (!/[:*?]/.test(m[2]) && !['AND', 'OR', 'NOT'].includes(m[2])) {
      out.push(m[2].toLowerCase());
    }
  }
  return out;
}

/** Byte ranges (= character ranges: ASCII only) of `terms` in `body`. */
function termRanges(terms, body) {
  const text = String(body ?? '');
  if (!terms.length || !ASCII.test(text)) return [];
  const lower = text.toLowerCase();
  const out = [];
  for (const t of terms) {
    for (let i = lower.indexOf(t); i >= 0 && out.length < 64; i = lower.indexOf(t, i + t.length)) out.push([i, i + t.length]);
  }
  return out;
}

/** A field value as the query language takes it (quoted unless a plain word). */
function quoteValue(v) {
  return /^[\w.\-/@]+$/.test(v) ? v : `"${v.replace(/"/g, '')}"`;
}

/** "1 line", "10,000 lines". */
function plural(n, one, many = one + 's') {
  return `${Number(n).toLocaleString('en')} ${n === 1 ? one : many}`;
}

function pickStep(rangeMs) {
  const want = rangeMs / 1000 / 90;
  return STEPS_S.find((s) => s >= want) || Math.ceil(want / 86400) * 86400;
}

export default {
  title: 'Logs',
  mount(main, params) {
    let v = readView(params.search);
    let seq = 0; // the search on screen; answers of older ones are dropped
    let records = []; // newest first
    let rendered = 0; // records[0..rendered) have rows
    let openNs = ''; // unix_nanos of the expanded line
    let tail = null; // EventSource while live
    let pending = []; // tail records not yet painted
    let flushQueued = false;
    const seenServices = new Set();
    const seenInstances = new Set();
    const seenFields = new Set();

    // The query bar ---------------------------------------------------------------------
    const input = h('input', {
      class: 'input mono logs-input',
      id: 'logs-query',
      name: 'query',
      'data-testid': 'logs-query',
      placeholder: 'level:error service:checkout "timeout"   (empty: every line)',
      spellcheck: 'false',
      autocomplete: 'off',
      'aria-label': 'Query',
      'aria-autocomplete': 'list',
      'aria-controls': 'logs-suggest',
    });
    const suggestBox = h('ul', { class: 'logs-suggest', id: 'logs-suggest', role: 'listbox', 'data-testid': 'logs-suggestions', hidden: true });
    const range = timeRange({ testid: 'logs-range', onChange: (r) => navigate(logsUrl({ ...v, query: input.value.trim(), ...r, line: '' })) });
    const limitSel = h('select', { class: 'input logs-limit', 'aria-label': 'Most lines', 'data-testid': 'logs-limit' }, LIMITS.map((l) => h('option', { value: l }, `${Number(l).toLocaleString('en')} lines`)));
    const liveBtn = h('button', { type: 'button', class: 'btn logs-live-btn', 'data-testid': 'logs-live', 'aria-pressed': 'false', title: 'Stream new matching lines as they arrive', onclick: () => setLive(!tail) }, h('span', { class: 'live-dot' }), 'Live tail');
    const form = h(
      'form',
      { class: 'logs-bar', 'data-testid': 'logs-form', novalidate: true, onsubmit: (ev) => { ev.preventDefault(); submit(); } },
      h('div', { class: 'logs-input-wrap' }, input, suggestBox),
      range.el,
      limitSel,
      h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'logs-search' }, 'Search'),
    );
    limitSel.addEventListener('change', () => navigate(logsUrl({ ...v, query: input.value.trim(), limit: limitSel.value, line: '' })));

    const errorBox = h('div', { 'data-testid': 'logs-error-box' });
    const hist = histogram({
      label: 'Matching lines over time',
      onSelect: (a, b) => navigate(logsUrl({ ...v, query: input.value.trim(), start: String(a), end: String(b), since: '', line: '' })),
    });
    const histTotal = h('span', { class: 'panel-count', 'data-testid': 'logs-hist-total' });
    const histPanel = h('section', { class: 'panel logs-hist-panel' }, h('div', { class: 'panel-head' }, h('h2', null, 'Matches over time'), histTotal, h('div', { class: 'spacer' }), h('span', { class: 'panel-hint' }, 'Drag across the bars to zoom in')), hist.el);
    const count = h('span', { class: 'panel-count', 'data-testid': 'logs-count' });
    const liveState = h('span', { class: 'live', 'data-testid': 'logs-live-state', hidden: true }, h('span', { class: 'live-dot' }), h('span', { class: 'live-text' }, 'live'));
    const status = h('div', { 'data-testid': 'logs-status' });
    const list = h('div', { class: 'logs-list', 'data-testid': 'logs-results', role: 'list' });
    const more = h('div', { class: 'logs-more', hidden: true }, h('button', { type: 'button', class: 'btn btn-sm', onclick: () => renderMore() }, 'Show more'));
    const listPanel = h('section', { class: 'panel logs-list-panel' }, h('div', { class: 'panel-head' }, h('h2', null, 'Lines'), count, h('div', { class: 'spacer' }), liveState), status, list, more);

    setChildren(
      main,
      h('div', { class: 'page-head' }, h('h1', null, 'Logs'), h('div', { class: 'spacer' }), liveBtn),
      h('section', { class: 'panel logs-bar-panel' }, form, h('div', { class: 'logs-bar-foot' }, range.chip, h('span', { class: 'field-hint' }, 'Words, "phrases", field:value, level:>=warn, status:>=500, AND / OR / NOT. Enter searches.'))),
      errorBox,
      histPanel,
      listPanel,
    );

    // Rendering in chunks: the sentinel below the list asks for the next chunk when seen.
    let io = null;
    if (typeof IntersectionObserver === 'function') {
      io = new IntersectionObserver((entries) => {
        if (entries.some((e) => e.isIntersecting)) renderMore();
      }, { rootMargin: '600px' });
      io.observe(more);
    }

    function fillForm() {
      input.value = v.query;
      input.classList.remove('invalid');
      range.set(v);
      if (!LIMITS.includes(v.limit)) limitSel.append(h('option', { value: v.limit }, `${v.limit} lines`));
      limitSel.value = v.limit;
    }

    function submit() {
      hideSuggest();
      const next = { ...v, query: input.value.trim(), line: '' };
      if (logsUrl(next) === location.pathname + location.search) runSearch();
      else navigate(logsUrl(next));
    }

    // Search ------------------------------------------------------------------------------
    async function runSearch() {
      const mine = ++seq;
      errorBox.replaceChildren();
      list.classList.add('stale');
      setChildren(status, h('div', { class: 'empty', 'data-testid': 'logs-loading' }, 'Searching…'));
      const sp = rangeParams(v, new URLSearchParams({ query: v.query, limit: v.limit, direction: 'backward' }));
      const ap = new URLSearchParams({ query: v.query ? `${v.query} | count` : '| count' });
      rangeParams(v, ap);
      const rangeMs = v.start ? (v.end ? Number(v.end) : Date.now()) - Number(v.start) : sinceMs(v.since);
      ap.set('step', `${pickStep(rangeMs)}s`);
      const [res, agg] = await Promise.allSettled([api('GET', `/api/logs?${sp}`), api('GET', `/api/logs/aggregate?${ap}`)]);
      if (mine !== seq) return;
      list.classList.remove('stale');
      status.replaceChildren();
      if (res.status === 'rejected') {
        showError(res.reason);
        records = [];
        paintList();
        listPanel.hidden = true; // the error says it all
        hist.clear();
        histPanel.hidden = true;
        count.textContent = '';
        return;
      }
      listPanel.hidden = false;
      records = res.value.records || [];
      learn(records);
      paintList();
      if (agg.status === 'fulfilled' && agg.value && Array.isArray(agg.value.series)) {
        const a = agg.value;
        const stepMs = Number(a.step_nanos) / 1e6;
        // No match: no series; draw the whole range empty.
        const counts = a.series[0] ? a.series[0].counts : new Array(Math.floor(rangeMs / stepMs) + 1).fill(0);
        histPanel.hidden = false;
        histTotal.textContent = plural(a.total || 0, 'match', 'matches');
        histTotal.dataset.total = String(a.total || 0);
        hist.paint({ startMs: Number(String(a.start_unix_nanos).slice(0, -6)) || 0, stepMs, counts });
      } else {
        histPanel.hidden = true;
        if (agg.status === 'rejected' && agg.reason.status !== 401) errorBox.append(notice('warning', `The histogram could not be drawn: ${agg.reason.message}`));
      }
    }

    function showError(e) {
      if (e.status === 401) return;
      if (e.field === 'query') input.classList.add('invalid');
      setChildren(errorBox, h('div', { class: 'notice notice-error logs-error', role: 'alert', 'data-testid': 'logs-error' }, e.field && !e.message.startsWith(`${e.field}:`) ? h('strong', null, `${e.field}: `) : null, e.message));
    }

    function sinceMs(s) {
      const m = /^(\d+)(ms|s|m|h)$/.exec(s || '');
      if (!m) return 3600e3;
      return Number(m[1]) * { ms: 1, s: 1e3, m: 60e3, h: 3600e3 }[m[2]];
    }

    /** Remembers services, instances and field names for the suggestions. */
    function learn(rs) {
      for (const r of rs.slice(0, 2000)) {
        if (r.service) seenServices.add(r.service);
        if (r.instance) seenInstances.add(r.instance);
        for (const k of Object.keys(r.attributes || {})) seenFields.add(k);
        for (const k of Object.keys(r.resource || {})) seenFields.add(k);
      }
    }

    // The list ------------------------------------------------------------------------------
    function paintList() {
      list.replaceChildren();
      rendered = 0;
      count.textContent = records.length ? plural(records.length, 'line') + (records.length >= Number(v.limit) && !tail ? ' (the newest; narrow the range for more)' : '') : '';
      if (!records.length) {
        setChildren(
          status,
          h(
            'div',
            { 'data-testid': 'logs-empty' },
            empty(
              tail ? 'Waiting for new lines…' : 'No log lines match',
              tail ? 'Lines that match the query appear here as they arrive.' : 'Widen the time range, remove a filter, or check that services ship their logs (signalbox agent, OTLP, Loki push or POST /api/logs).',
            ),
          ),
        );
      } else {
        status.replaceChildren();
      }
      renderMore();
      if (openNs) openLine(openNs, false);
    }

    function renderMore() {
      if (rendered >= records.length) {
        more.hidden = true;
        return;
      }
      const frag = document.createDocumentFragment();
      const to = Math.min(records.length, rendered + CHUNK);
      for (let i = rendered; i < to; i++) frag.appendChild(entry(records[i]));
      list.appendChild(frag);
      rendered = to;
      more.hidden = rendered >= records.length;
    }

    function entry(r) {
      const ms = recordMs(r);
      const sev = sevClass(r);
      const row = h(
        'div',
        { class: 'log-row', role: 'button', tabindex: '0', 'aria-expanded': 'false', title: 'Show the fields and the lines around it' },
        h('time', { class: 'log-time', datetime: new Date(ms).toISOString(), title: fullTimeMs(ms) }, clock(ms)),
        h('span', { class: `log-sev sev-${sev}`, 'data-testid': 'log-severity' }, (r.severity_text || r.severity || '').toString().toUpperCase().slice(0, 5) || '—'),
        h('span', { class: 'log-svc', title: r.instance ? `${r.service} · ${r.instance}` : r.service }, r.service || ''),
        h('span', { class: 'log-body', 'data-testid': 'log-body' }, bodyNodes(r.body, r.highlights)),
      );
      const el = h('div', { class: `log-entry sev-row-${sev}`, role: 'listitem', 'data-testid': 'log-line', 'data-ns': r.unix_nanos, 'data-severity': sev }, row);
      el._record = r;
      return el;
    }

    list.addEventListener('click', (ev) => {
      const row = ev.target.closest('.log-row');
      if (!row || ev.target.closest('a')) return;
      if (window.getSelection && String(window.getSelection()).length) return; // selecting text
      toggle(row.parentElement);
    });
    list.addEventListener('keydown', (ev) => {
      const row = ev.target.closest('.log-row');
      if (row && (ev.key === 'Enter' || ev.key === ' ')) {
        ev.preventDefault();
        toggle(row.parentElement);
      }
    });

    function toggle(el) {
      const ns = el.dataset.ns;
      const opening = !el.classList.contains('open');
      navigate(logsUrl({ ...v, line: opening ? ns : '' }), { replace: true });
    }

    /** Expands the line `ns` (closing any other); scrolls it into view when asked. */
    function openLine(ns, scroll) {
      for (const o of list.querySelectorAll('.log-entry.open')) closeEntry(o);
      openNs = ns;
      if (!ns) return;
      let el = list.querySelector(`.log-entry[data-ns="${CSS.escape(ns)}"]`);
      if (!el) {
        const i = records.findIndex((r) => r.unix_nanos === ns);
        if (i < 0) return;
        while (rendered <= i) renderMore();
        el = list.querySelector(`.log-entry[data-ns="${CSS.escape(ns)}"]`);
        if (!el) return;
      }
      el.classList.add('open');
      el.firstChild.setAttribute('aria-expanded', 'true');
      el.appendChild(detail(el._record));
      if (scroll) el.scrollIntoView({ block: 'nearest' });
    }

    function closeEntry(el) {
      el.classList.remove('open');
      el.firstChild.setAttribute('aria-expanded', 'false');
      el.querySelector('.log-detail')?.remove();
    }

    function detail(r) {
      const ms = recordMs(r);
      const ctx = h('div', { class: 'log-context', 'data-testid': 'log-context' }, h('div', { class: 'muted' }, 'Loading the lines around it…'));
      const kv = (k, val, testid) => [h('dt', null, k), h('dd', { 'data-testid': testid }, val)];
      const el = h(
        'div',
        { class: 'log-detail', 'data-testid': 'log-detail' },
        h(
          'div',
          { class: 'log-detail-grid' },
          h(
            'dl',
            { class: 'kv' },
            kv('Time', h('span', { class: 'mono' }, fullTimeMs(ms)), 'log-field-time'),
            kv('Severity', `${r.severity}${r.severity_text && r.severity_text.toUpperCase() !== r.severity ? ` (${r.severity_text})` : ''}`, 'log-field-severity'),
            kv('Service', r.service || '—', 'log-field-service'),
            kv('Instance', r.instance || '—', 'log-field-instance'),
            r.trace_id
              ? kv(
                  'Trace',
                  [
                    h('a', { href: traceUrl(r.trace_id, r.span_id), class: 'mono', 'data-testid': 'log-trace-link', title: 'Open this trace in the Traces page' }, r.trace_id),
                    h('div', { class: 'log-trace-actions' }, h('a', { href: traceUrl(r.trace_id, r.span_id) }, 'Open trace'), ' · ', h('a', { href: traceLogsUrl(r.trace_id, '', { since: v.since, start: v.start, end: v.end, limit: v.limit }), 'data-testid': 'log-trace-logs' }, 'All logs of this trace')),
                  ],
                  'log-field-trace',
                )
              : null,
            r.span_id ? kv('Span', h('span', { class: 'mono' }, r.span_id), 'log-field-span') : null,
          ),
          h('div', null, fieldTable('Attributes', r.attributes, 'log-attributes'), fieldTable('Resource', r.resource, 'log-resource')),
        ),
        h('div', { class: 'wf-section' }, h('h3', null, 'In context ', h('span', { class: 'muted' }, `(${CONTEXT} lines before and after on ${r.instance || r.service || 'this source'})`)), ctx),
      );
      loadContext(r, ctx);
      return el;
    }

    function fieldTable(title, attrs, testid) {
      const entries = sortedEntries(attrs);
      return h(
        'div',
        { class: 'wf-section', 'data-testid': testid },
        h('h3', null, title),
        entries.length
          ? h(
              'table',
              { class: 'table attr-table' },
              h(
                'tbody',
                null,
                entries.map(([k, val]) =>
                  h(
                    'tr',
                    { 'data-key': k },
                    h('td', { class: 'attr-key mono' }, k),
                    h('td', { class: `attr-value ${typeof val === 'number' ? 'attr-num' : typeof val === 'boolean' ? 'attr-bool' : 'attr-str'}` }, typeof val === 'object' && val !== null ? JSON.stringify(val) : String(val)),
                    h('td', { class: 'attr-act' }, h('button', { type: 'button', class: 'logs-add', title: `Add ${k} to the query`, 'aria-label': `Filter on ${k}`, onclick: () => addFilter(`${k}:${quoteValue(String(val))}`) }, '+')),
                  ),
                ),
              ),
            )
          : h('div', { class: 'wf-none muted' }, 'None'),
      );
    }

    function addFilter(term) {
      const q = input.value.trim();
      navigate(logsUrl({ ...v, query: q ? `${q} ${term}` : term, line: '' }));
    }

    async function loadContext(r, box) {
      const ns = BigInt(r.unix_nanos);
      const terms = [];
      if (r.service) terms.push(`service:${quoteValue(r.service)}`);
      if (r.instance) terms.push(`instance:${quoteValue(r.instance)}`);
      const p = new URLSearchParams({ query: terms.join(' '), start: String(ns), end: String(ns + 1n), limit: '20', context: String(CONTEXT) });
      try {
        const res = await api('GET', `/api/logs?${p}`);
        const me = (res.records || []).find((x) => x.unix_nanos === r.unix_nanos && x.body === r.body) || (res.records || [])[0];
        if (!me || !me.context) {
          setChildren(box, h('div', { class: 'muted' }, 'No lines around it.'));
          return;
        }
        const line = (x, self) =>
          h(
            'div',
            { class: `log-ctx-line${self ? ' self' : ''}`, 'data-testid': self ? 'log-context-self' : 'log-context-line' },
            h('span', { class: 'log-time' }, clock(recordMs(x))),
            h('span', { class: `log-sev sev-${sevClass(x)}` }, String(x.severity || '').slice(0, 5)),
            h('span', { class: 'log-body' }, x.body),
          );
        const { before = [], after = [] } = me.context;
        setChildren(box, before.map((x) => line(x, false)), line(r, true), after.map((x) => line(x, false)));
      } catch (e) {
        if (e.status !== 401) setChildren(box, h('div', { class: 'field-error' }, `Could not load the context: ${e.message}`));
      }
    }

    // Live tail -----------------------------------------------------------------------------
    // The tail is its own EventSource, not a topic of the tab's shared stream (stream.js):
    // it carries the person's query, which the server filters by, and it is open only
    // while this page shows "Live" — unmount (leaving the Logs page) closes it.
    function setLive(on) {
      if (tail) {
        tail.close();
        tail = null;
      }
      liveBtn.classList.toggle('active', on);
      liveBtn.setAttribute('aria-pressed', String(on));
      liveState.hidden = !on;
      if (!on) return;
      liveState.dataset.state = 'connecting';
      const terms = queryTerms(v.query);
      const es = new EventSource(`/api/logs/tail?${new URLSearchParams({ query: v.query })}`);
      tail = es;
      es.addEventListener('open', () => tail === es && (liveState.dataset.state = 'live'));
      es.addEventListener('error', () => {
        if (tail !== es) return;
        liveState.dataset.state = es.readyState === EventSource.CLOSED ? 'offline' : 'reconnecting';
        if (es.readyState === EventSource.CLOSED) {
          setLive(false);
          setChildren(errorBox, notice('error', 'The live tail stopped: the node refused it or went away. Check the query, then turn it on again.'));
        }
      });
      es.addEventListener('record', (ev) => {
        if (tail !== es) return;
        try {
          const r = JSON.parse(ev.data);
          if (!r.highlights) r.highlights = termRanges(terms, r.body);
          pending.push(r);
        } catch {
          return;
        }
        if (!flushQueued) {
          flushQueued = true;
          requestAnimationFrame(flush);
        }
      });
    }

    /** Prepends the lines that arrived since the last frame, newest on top. */
    function flush() {
      flushQueued = false;
      if (!pending.length) return;
      const batch = pending.reverse();
      pending = [];
      learn(batch);
      const wasEmpty = !records.length;
      records = batch.concat(records);
      const frag = document.createDocumentFragment();
      for (const r of batch) {
        const el = entry(r);
        el.classList.add('log-new');
        frag.appendChild(el);
      }
      list.insertBefore(frag, list.firstChild);
      rendered += batch.length;
      if (records.length > MAX_LINES) {
        records.length = MAX_LINES;
        while (rendered > MAX_LINES && list.lastChild) {
          list.lastChild.remove();
          rendered--;
        }
      }
      const counted = hist.add(batch.map(recordMs));
      if (counted) {
        const total = (Number(histTotal.dataset.total) || 0) + counted;
        histTotal.dataset.total = String(total);
        histTotal.textContent = plural(total, 'match', 'matches');
      }
      if (wasEmpty) status.replaceChildren();
      count.textContent = plural(records.length, 'line');
      more.hidden = rendered >= records.length;
    }

    // Suggestions ---------------------------------------------------------------------------
    let suggestions = [];
    let active = -1;

    /** The word under the caret: [start, end, text]. */
    function currentToken() {
      const val = input.value;
      const caret = input.selectionStart ?? val.length;
      let s = caret;
      while (s > 0 && !/[\s(]/.test(val[s - 1])) s--;
      if (val[s] === '-') s++;
      let e = caret;
      while (e < val.length && !/[\s)]/.test(val[e])) e++;
      return [s, e, val.slice(s, caret)];
    }

    function computeSuggestions() {
      const [, , tok] = currentToken();
      if (!tok) return [];
      const colon = tok.indexOf(':');
      if (colon < 0) {
        const fields = [...new Set([...BASE_FIELDS, ...[...seenFields].sort()])];
        const lower = tok.toLowerCase();
        return fields.filter((f) => f.toLowerCase().startsWith(lower) && f !== tok).slice(0, 8).map((f) => ({ label: `${f}:`, insert: `${f}:`, kind: 'field' }));
      }
      const field = tok.slice(0, colon).toLowerCase();
      const part = tok.slice(colon + 1).replace(/^"/, '').toLowerCase();
      const values = field === 'service' ? [...seenServices].sort() : field === 'instance' ? [...seenInstances].sort() : field === 'level' || field === 'severity' ? LEVELS : [];
      return values
        .filter((x) => x.toLowerCase().startsWith(part) && x.toLowerCase() !== part)
        .slice(0, 8)
        .map((x) => ({ label: x, insert: `${tok.slice(0, colon + 1)}${quoteValue(x)} `, kind: 'value' }));
    }

    function showSuggest() {
      suggestions = computeSuggestions();
      active = -1;
      if (!suggestions.length) {
        hideSuggest();
        return;
      }
      setChildren(
        suggestBox,
        suggestions.map((s, i) =>
          h(
            'li',
            { role: 'option', class: `logs-sugg logs-sugg-${s.kind}`, 'data-testid': 'logs-suggestion', 'data-value': s.label, onmousedown: (ev) => { ev.preventDefault(); accept(i); } },
            s.label,
            h('span', { class: 'logs-sugg-kind' }, s.kind),
          ),
        ),
      );
      suggestBox.hidden = false;
    }

    function hideSuggest() {
      suggestBox.hidden = true;
      suggestions = [];
      active = -1;
    }

    function markActive() {
      Array.from(suggestBox.children).forEach((li, i) => li.classList.toggle('active', i === active));
    }

    function accept(i) {
      const s = suggestions[i];
      if (!s) return;
      const [start, end] = currentToken();
      const val = input.value;
      input.value = val.slice(0, start) + s.insert + val.slice(end);
      const caret = start + s.insert.length;
      input.setSelectionRange(caret, caret);
      input.focus();
      showSuggest();
    }

    input.addEventListener('input', () => {
      input.classList.remove('invalid');
      showSuggest();
    });
    input.addEventListener('blur', () => setTimeout(hideSuggest, 100));
    input.addEventListener('keydown', (ev) => {
      if (suggestBox.hidden || !suggestions.length) return;
      if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
        ev.preventDefault();
        const n = suggestions.length;
        active = ev.key === 'ArrowDown' ? (active + 1) % n : (active - 1 + n) % n;
        markActive();
      } else if ((ev.key === 'Enter' || ev.key === 'Tab') && active >= 0) {
        ev.preventDefault();
        accept(active);
      } else if (ev.key === 'Tab' && suggestions.length === 1) {
        ev.preventDefault();
        accept(0);
      } else if (ev.key === 'Escape') {
        hideSuggest();
      }
    });

    // Start ---------------------------------------------------------------------------------
    let lastKey = '';
    function apply(search) {
      v = readView(search);
      fillForm();
      const key = searchKey(v);
      if (key === lastKey) {
        if (v.line !== openNs) openLine(v.line, true);
        return;
      }
      lastKey = key;
      openNs = v.line;
      if (tail) setLive(true); // the new query's tail
      runSearch();
    }

    apply(params.search);

    return {
      update(p) {
        apply(p.search);
      },
      unmount() {
        seq++;
        if (tail) tail.close();
        tail = null;
        if (io) io.disconnect();
        hist.destroy();
      },
    };
  },
};
