// One trace (/traces/{id}, /traces/{id}?span={spanId}): a header with the trace's shape
// and a waterfall: a time axis, one row per span in tree order with collapsible subtrees,
// bars coloured by service, error spans and the critical path marked, and a detail panel
// under the selected span (deep-linked by ?span=).
//
// The rows are built once; collapsing, finding and selecting only toggle `hidden` and
// classes, so traces of thousands of spans stay responsive.

import { h, setChildren, notice, ago, plural } from '../dom.js';
import { api, seg } from '../api.js';
import { navigate } from '../router.js';
import { buildTree, criticalPath, selfTime, sortedEntries, gatewayServices, mapEdge, fmtDur, fmtOffset, fullTimeMs, ticks, serviceColor, primeColors } from '../trace-model.js';
import { lastSearch } from './traces.js';
import { traceUrl, traceLogsUrl, mapUrl, metricsUrl, servicesMetricsQuery, around } from '../links.js';

const INDENT_PX = 14;
const MAX_INDENT = 40; // levels; deeper spans stop moving right

export default {
  title: (p) => `Trace ${String(p.id).slice(0, 8)} · Traces`,
  mount(main, params) {
    const id = params.id;
    let alive = true;
    let view = null; // the waterfall, once loaded
    let pendingSpan = params.span || null;

    const titleEl = h('span', { 'data-testid': 'trace-title' }, id);
    const head = h(
      'div',
      { class: 'page-head' },
      h('h1', { class: 'trace-h1' }, h('a', { href: lastSearch, class: 'crumb', 'data-testid': 'trace-back', title: 'Back to the search' }, 'Traces'), h('span', { class: 'crumb-sep' }, '/'), titleEl),
    );
    const body = h('div', null, h('div', { class: 'empty', 'data-testid': 'trace-loading' }, 'Loading trace…'));
    setChildren(main, head, body);

    function load() {
      api('GET', `/api/traces/${seg(id)}`)
        .then((r) => {
          if (!alive) return;
          const spans = r.spans || [];
          if (!spans.length) throw Object.assign(new Error(`trace ${id} has no spans`), { status: 404 });
          view = render(spans);
          if (pendingSpan) view.select(pendingSpan, true);
        })
        .catch((e) => {
          if (!alive || e.status === 401) return;
          titleEl.textContent = e.status === 404 ? 'Trace not found' : 'Trace';
          if (e.status === 404) {
            setChildren(
              body,
              h(
                'div',
                { class: 'placeholder', 'data-testid': 'trace-not-found' },
                h('div', { class: 'placeholder-title' }, 'No trace with this ID'),
                h('p', null, 'The node has no spans of trace ', h('code', null, id), '. It may be older than the retention, not sampled, or still waiting for its last spans (a trace is stored a few seconds after it ends).'),
                h('p', { class: 'muted' }, e.message),
                h('p', null, h('a', { href: lastSearch }, 'Back to the search')),
              ),
            );
          } else {
            setChildren(
              body,
              h(
                'div',
                { 'data-testid': 'trace-error' },
                notice('error', `Could not load the trace: ${e.message}`, e.status === 400 ? null : h('div', { class: 'notice-actions' }, h('button', { type: 'button', class: 'btn btn-sm', onclick: retry }, 'Retry'))),
              ),
            );
          }
        });
    }

    function retry() {
      setChildren(body, h('div', { class: 'empty', 'data-testid': 'trace-loading' }, 'Loading trace…'));
      load();
    }

    function render(spans) {
      const tree = buildTree(spans);
      const root = tree.root;
      primeColors(tree.services.map((s) => s.name));
      titleEl.replaceChildren(h('span', { style: { color: serviceColor(root.span.service) } }, root.span.service), ': ', root.span.name || '(no name)');
      const startMs = tree.startMs;
      const stat = (label, value, testid) => h('div', { class: 'stat' }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value', 'data-testid': testid }, value));
      const summary = h(
        'section',
        { class: 'panel trace-summary', 'data-testid': 'trace-summary' },
        h(
          'div',
          { class: 'trace-stats' },
          stat('Trace ID', h('span', { class: 'mono' }, id), 'trace-id'),
          stat('Started', h('time', { datetime: new Date(startMs).toISOString(), title: ago(startMs) }, fullTimeMs(startMs), h('span', { class: 'muted' }, ` · ${ago(startMs)}`)), 'trace-start'),
          stat('Duration', fmtDur(tree.duration), 'trace-duration'),
          stat('Services', String(tree.services.length), 'trace-services'),
          stat('Depth', String(tree.depth), 'trace-depth'),
          stat('Spans', String(tree.nodes.length), 'trace-spans'),
          stat('Errors', tree.errors ? h('span', { class: 'status-text-critical' }, String(tree.errors)) : '0', 'trace-errors'),
        ),
        h(
          'div',
          { class: 'trace-svcs' },
          tree.services.map((s) => h('a', { class: 'svc-badge', 'data-service': s.name, 'data-testid': 'trace-service', title: `Metrics of ${s.name} around this trace`, href: metricsUrl({ query: servicesMetricsQuery([s.name]), start: String(Math.floor(startMs - 5 * 60e3)), end: String(Math.ceil(startMs + tree.duration / 1e6 + 5 * 60e3)) }) }, h('span', { class: 'svc-dot', style: { background: serviceColor(s.name) } }), s.name, h('span', { class: 'svc-count' }, String(s.count)))),
        ),
      );
      // The trace elsewhere: its logs (a minute either side), and the RED metrics of its
      // services from five minutes before to five minutes after.
      const endMs = startMs + tree.duration / 1e6;
      const logsWindow = Number.isFinite(startMs) ? around(startMs, 60e3, 60e3 + tree.duration / 1e6) : { since: '24h' };
      const metricsWindow = Number.isFinite(startMs) ? { start: String(Math.floor(startMs - 5 * 60e3)), end: String(Math.ceil(endMs + 5 * 60e3)) } : { since: '1h' };
      const names = tree.services.map((s) => s.name);
      head.append(
        h('div', { class: 'spacer' }),
        h('a', { class: 'btn btn-sm', href: metricsUrl({ query: servicesMetricsQuery(names), ...metricsWindow }), 'data-testid': 'trace-metrics', title: 'Request rate, errors and p99 of the services of this trace, around its time' }, 'Metrics of its services'),
        h('a', { class: 'btn btn-sm', href: traceLogsUrl(id, '', logsWindow), 'data-testid': 'trace-logs', title: 'The log lines that carry this trace id' }, 'Logs of this trace'), h('a', { class: 'btn btn-sm', href: `/api/traces/${seg(id)}`, target: '_blank', rel: 'noopener', title: 'The spans as the API returns them' }, 'JSON'));
      const wf = waterfall(tree, id);
      setChildren(body, summary, wf.el);
      return wf;
    }

    load();

    return {
      update(p) {
        if (p.id !== id) return false;
        pendingSpan = p.span || null;
        if (view) view.select(pendingSpan, true);
        return true;
      },
      unmount() {
        alive = false;
        if (view) view.destroy();
      },
    };
  },
};

/** The waterfall of a built tree: `{ el, select(spanId, scroll), destroy() }`. */
function waterfall(tree, traceId) {
  const { nodes } = tree;
  const n = nodes.length;
  const total = Math.max(tree.duration, 1);
  const pct = (ns) => `${((100 * ns) / total).toFixed(4)}%`;
  const cp = criticalPath(tree.root);
  const gateways = gatewayServices(nodes);
  const collapsed = new Set(); // node indexes
  const rows = new Array(n);
  let selected = -1;
  let detail = null;
  let active = 0; // the row in the tab order
  let findTimer = null;
  let matches = [];

  // Header: the axis ------------------------------------------------------------------
  const tickVals = ticks(total, 5).filter((v) => v / total < 0.86);
  const axis = h(
    'div',
    { class: 'wf-track wf-axis', 'aria-hidden': 'true' },
    tickVals.map((v) => h('span', { class: 'wf-tick', style: { left: pct(v) } }, fmtDur(v))),
    h('span', { class: 'wf-tick wf-tick-end' }, fmtDur(tree.duration)),
  );
  const resizer = h('div', { class: 'wf-resizer', role: 'separator', 'aria-orientation': 'vertical', 'aria-label': 'Resize the name column', tabindex: '0' });
  const headRow = h('div', { class: 'wf-head' }, h('div', { class: 'wf-name wf-head-name' }, 'Service & operation', resizer), axis);
  const grid = h(
    'div',
    { class: 'wf-gridlines', 'aria-hidden': 'true' },
    tickVals.slice(1).map((v) => h('span', { style: { left: pct(v) } })),
  );

  // Rows ----------------------------------------------------------------------------------
  const frag = document.createDocumentFragment();
  for (const node of nodes) {
    const row = rowEl(node);
    rows[node.index] = row;
    frag.appendChild(row);
  }
  const bodyEl = h('div', { class: 'wf-body', role: 'tree', 'aria-label': 'Spans', 'data-testid': 'waterfall' }, grid);
  bodyEl.appendChild(frag);
  if (rows[0]) rows[0].tabIndex = 0;

  function rowEl(node) {
    const s = node.span;
    const color = serviceColor(s.service);
    const isErr = s.status === 'error';
    const segs = cp.get(node);
    const hasKids = node.children.length > 0;
    const dur = node.end - node.start;
    const barLeft = (100 * node.start) / total;
    const barEnd = (100 * node.end) / total;
    // The duration goes after the bar, or before it near the right edge, or inside a bar
    // that spans nearly everything.
    let labelStyle;
    let labelClass = 'wf-dur';
    if (barEnd < 82) labelStyle = { left: `calc(${barEnd.toFixed(4)}% + 6px)` };
    else if (barLeft > 14) labelStyle = { right: `calc(${(100 - barLeft).toFixed(4)}% + 6px)` };
    else {
      labelStyle = { right: `calc(${(100 - barEnd).toFixed(4)}% + 6px)` };
      labelClass = 'wf-dur inside';
    }
    return h(
      'div',
      {
        class: `wf-row${isErr ? ' is-error' : ''}${segs ? ' on-cp' : ''}`,
        role: 'treeitem',
        'aria-level': node.depth + 1,
        'aria-expanded': hasKids ? 'true' : null,
        'aria-selected': 'false',
        tabindex: '-1',
        'data-testid': 'span-row',
        'data-index': node.index,
        'data-span-id': s.span_id,
        'data-service': s.service,
        'data-depth': node.depth,
        'data-critical': String(!!segs),
        'data-error': String(isErr),
      },
      h(
        'div',
        { class: 'wf-name', style: { borderLeftColor: color } },
        node.depth ? h('span', { class: 'wf-indent', style: { width: `${Math.min(node.depth, MAX_INDENT) * INDENT_PX}px` } }) : null,
        hasKids
          ? h('button', { type: 'button', class: 'wf-toggle', tabindex: '-1', 'aria-label': `Collapse ${plural(node.last - node.index, 'descendant')}`, 'aria-expanded': 'true', 'data-testid': 'span-toggle' })
          : h('span', { class: 'wf-toggle-none' }),
        h('span', { class: 'wf-svc', style: { color } }, s.service),
        h('span', { class: 'wf-op', title: s.name }, s.name || '(no name)'),
        isErr ? h('span', { class: 'wf-err', 'data-testid': 'span-error', title: s.status_message ? `Error: ${s.status_message}` : 'Error' }, '!') : null,
        node.orphan ? h('span', { class: 'tag tag-warn', title: `Parent ${s.parent_span_id || ''} is not in this trace` }, 'no parent') : null,
        hasKids ? h('span', { class: 'wf-more', hidden: true }, `+${node.last - node.index}`) : null,
      ),
      h(
        'div',
        { class: 'wf-track' },
        h('div', { class: 'wf-bar', style: { left: pct(node.start), width: pct(dur), background: color }, title: `${s.service}: ${s.name} · ${fmtDur(dur)} at ${fmtOffset(node.start)}` }),
        segs ? segs.map(([a, b]) => h('div', { class: 'wf-cp', 'data-testid': 'critical-segment', style: { left: pct(a), width: pct(b - a) } })) : null,
        (s.events || []).map((e) => h('div', { class: 'wf-ev', style: { left: pct(tree.offset(e.unix_nanos)) } })),
        h('span', { class: labelClass, style: labelStyle }, fmtDur(dur)),
      ),
    );
  }

  // Collapsing ----------------------------------------------------------------------------
  function applyVisibility() {
    for (let i = 0; i < n; ) {
      if (rows[i].hidden) rows[i].hidden = false;
      if (collapsed.has(i)) {
        for (let j = i + 1; j <= nodes[i].last; j++) if (!rows[j].hidden) rows[j].hidden = true;
        i = nodes[i].last + 1;
      } else {
        i++;
      }
    }
    if (detail) detail.hidden = selected < 0 || rows[selected].hidden;
    visibleCount.textContent = `${plural(countVisible(), 'row')} of ${n}`;
  }

  function countVisible() {
    let c = 0;
    for (let i = 0; i < n; i++) if (!rows[i].hidden) c++;
    return c;
  }

  function paintToggle(i) {
    const node = nodes[i];
    if (!node.children.length) return;
    const row = rows[i];
    const closed = collapsed.has(i);
    const btn = row.querySelector('.wf-toggle');
    row.setAttribute('aria-expanded', String(!closed));
    row.classList.toggle('collapsed', closed);
    btn.setAttribute('aria-expanded', String(!closed));
    btn.setAttribute('aria-label', `${closed ? 'Expand' : 'Collapse'} ${plural(node.last - node.index, 'descendant')}`);
    row.querySelector('.wf-more').hidden = !closed;
  }

  function setCollapsed(i, closed) {
    if (!nodes[i].children.length || collapsed.has(i) === closed) return;
    if (closed) collapsed.add(i);
    else collapsed.delete(i);
    paintToggle(i);
    applyVisibility();
  }

  function expandAll() {
    const was = Array.from(collapsed);
    collapsed.clear();
    for (const i of was) paintToggle(i);
    applyVisibility();
  }

  function collapseAll() {
    for (const node of nodes) {
      if (node.children.length && !collapsed.has(node.index)) {
        collapsed.add(node.index);
        paintToggle(node.index);
      }
    }
    applyVisibility();
    if (rows[active].hidden) focusRow(topOf(active), false);
  }

  /** Expands every ancestor of node i. */
  function reveal(i) {
    let changed = false;
    for (let p = nodes[i].parent; p; p = p.parent) {
      if (collapsed.delete(p.index)) {
        paintToggle(p.index);
        changed = true;
      }
    }
    if (changed) applyVisibility();
  }

  function topOf(i) {
    let node = nodes[i];
    while (node.parent && rows[node.index].hidden) node = node.parent;
    return node.index;
  }

  // Selection and the detail panel -----------------------------------------------------------
  function select(spanId, scroll) {
    const i = spanId ? nodes.findIndex((x) => x.span.span_id === spanId) : -1;
    // Nothing to do when that span is already selected. Otherwise go on, also without a
    // selection: a notice about a span that is not in the trace must go away.
    if (i >= 0 && i === selected) return;
    if (selected >= 0) {
      rows[selected].classList.remove('selected');
      rows[selected].setAttribute('aria-selected', 'false');
    }
    if (detail) detail.remove();
    detail = null;
    selected = i;
    missing.replaceChildren();
    if (i < 0) {
      if (spanId) setChildren(missing, notice('warning', 'Span ', h('code', null, spanId), ' is not in this trace.'));
      return;
    }
    reveal(i);
    const row = rows[i];
    row.classList.add('selected');
    row.setAttribute('aria-selected', 'true');
    detail = detailEl(nodes[i]);
    row.after(detail);
    setActive(i);
    if (scroll) row.scrollIntoView({ block: 'nearest' });
  }

  function openDetail(i) {
    const sid = nodes[i].span.span_id;
    const want = selected === i ? null : sid;
    // The URL follows the selection (a deep link), without a history entry per click.
    navigate(traceUrl(traceId, want), { replace: true });
  }

  function detailEl(node) {
    const s = node.span;
    const dur = node.end - node.start;
    // The resource (the emitting process: service, host, SDK) and the instrumentation
    // scope come apart from the span's own attributes.
    const own = sortedEntries(s.attributes);
    const res = sortedEntries(s.resource);
    const segs = cp.get(node);
    const onCp = segs ? segs.reduce((a, [x, y]) => a + y - x, 0) : 0;
    const kv = (label, ...value) => [h('dt', null, label), h('dd', null, ...value)];
    const parent = node.parent
      ? h('a', { href: traceUrl(traceId, node.parent.span.span_id), class: 'mono', 'data-testid': 'span-parent', onclick: (ev) => { ev.preventDefault(); navigate(traceUrl(traceId, node.parent.span.span_id), { replace: true }); } }, node.parent.span.span_id)
      : s.parent_span_id
        ? h('span', null, h('span', { class: 'mono' }, s.parent_span_id), h('span', { class: 'muted' }, ' (not in this trace)'))
        : h('span', { class: 'muted' }, 'none (root span)');
    const statusBadge = h('span', { class: `badge span-status span-status-${s.status}`, 'data-testid': 'span-status' }, s.status);
    const close = h('button', { type: 'button', class: 'btn btn-sm', 'data-testid': 'span-detail-close', onclick: () => openDetail(node.index) }, 'Close');
    const link = h('a', { href: traceUrl(traceId, s.span_id), class: 'btn btn-sm', title: 'A link to this span', 'data-testid': 'span-link' }, 'Link');
    // This span elsewhere: its log lines, and the service-map edge it crossed (its caller's
    // service calling this one), over the span's time give or take a few minutes.
    const spanMs = Number(s.start_unix_nanos) / 1e6;
    const window = Number.isFinite(spanMs) ? around(spanMs, 5 * 60e3, 5 * 60e3 + dur / 1e6) : { since: '24h' };
    const spanLogs = h('a', { href: traceLogsUrl(traceId, s.span_id, window), class: 'btn btn-sm', title: 'The log lines that carry this trace id and span id', 'data-testid': 'span-logs' }, 'Logs');
    // The edge as the map draws it: through the gateway, not to it.
    const edge = mapEdge(node, gateways);
    const spanEdge = edge
      ? h('a', { href: mapUrl({ edge, ...window }), class: 'btn btn-sm', title: `The ${edge.from} → ${edge.to} edge on the service map`, 'data-testid': 'span-map-edge' }, `${edge.from} → ${edge.to} on the map`)
      : null;
    return h(
      'div',
      { class: 'wf-detail', 'data-testid': 'span-detail', 'data-span-id': s.span_id, role: 'region', 'aria-label': `Span ${s.name}` },
      h(
        'div',
        { class: 'wf-detail-head' },
        h('span', { class: 'svc-dot', style: { background: serviceColor(s.service) } }),
        h('strong', { 'data-testid': 'span-detail-title' }, s.service, ': ', s.name || '(no name)'),
        statusBadge,
        h('span', { class: 'spacer' }),
        spanLogs,
        spanEdge,
        link,
        close,
      ),
      h(
        'dl',
        { class: 'kv' },
        kv('Service', s.service),
        kv('Operation', s.name || '(no name)'),
        kv('Kind', s.kind),
        kv('Status', statusBadge.cloneNode(true), s.status_message ? h('span', { class: 'span-status-msg', 'data-testid': 'span-status-message' }, s.status_message) : null),
        kv('Start', fmtOffset(node.start), h('span', { class: 'muted' }, ` · ${fullTimeMs(Number(s.start_unix_nanos) / 1e6)}`)),
        kv('Duration', h('span', { 'data-testid': 'span-duration' }, fmtDur(dur)), h('span', { class: 'muted' }, ` · ${((100 * dur) / total).toFixed(1)}% of the trace · self ${fmtDur(selfTime(node))}`)),
        kv('Critical path', onCp ? `${fmtDur(onCp)} on it` : h('span', { class: 'muted' }, 'not on it')),
        kv('Span ID', h('span', { class: 'mono', 'data-testid': 'span-id' }, s.span_id)),
        kv('Parent', parent),
        kv('Trace ID', h('span', { class: 'mono' }, s.trace_id || traceId)),
        s.trace_state ? kv('Trace state', h('span', { class: 'mono' }, s.trace_state)) : null,
        s.scope ? kv('Scope', h('span', { class: 'mono', 'data-testid': 'span-scope', title: 'The instrumentation library that recorded the span' }, s.scope.name, s.scope.version ? ` ${s.scope.version}` : '')) : null,
      ),
      attrTable('Attributes', own, 'span-attributes', 'No attributes'),
      res.length ? attrTable('Resource', res, 'span-resource', null, 'The process that emitted the span: its OpenTelemetry resource') : null,
      linksEl(s),
      eventsEl(s, node),
    );
  }

  function linksEl(s) {
    const links = s.links || [];
    if (!links.length) return null;
    return h(
      'div',
      { class: 'wf-section', 'data-testid': 'span-links' },
      h('h3', { title: 'Spans this one is linked to (a batch it consumes, the message it handles, …)' }, 'Links ', h('span', { class: 'muted' }, String(links.length))),
      h(
        'table',
        { class: 'table attr-table' },
        h('thead', null, h('tr', null, h('th', null, 'Span'), h('th', null, 'Attributes'))),
        h(
          'tbody',
          null,
          links.map((l) => {
            const to = traceUrl(l.trace_id, l.span_id);
            const same = l.trace_id === (s.trace_id || traceId);
            const attrs = Object.entries(l.attributes || {});
            return h(
              'tr',
              { 'data-testid': 'span-link-row' },
              h(
                'td',
                null,
                h('a', { href: to, class: 'mono', 'data-testid': 'span-link-target', onclick: (ev) => { ev.preventDefault(); navigate(to); } }, l.span_id),
                h('div', { class: 'sub mono' }, same ? 'in this trace' : `trace ${l.trace_id}`),
              ),
              h('td', null, attrs.length ? h('dl', { class: 'kv kv-compact' }, attrs.map(([k, v]) => [h('dt', { class: 'mono' }, k), h('dd', null, valueEl(v))])) : h('span', { class: 'muted' }, '—')),
            );
          }),
        ),
      ),
    );
  }

  function eventsEl(s, node) {
    const events = s.events || [];
    if (!events.length) return null;
    return h(
      'div',
      { class: 'wf-section', 'data-testid': 'span-events' },
      h('h3', null, 'Events ', h('span', { class: 'muted' }, String(events.length))),
      h(
        'table',
        { class: 'table attr-table' },
        h('thead', null, h('tr', null, h('th', null, 'Time'), h('th', null, 'Event'), h('th', null, 'Attributes'))),
        h(
          'tbody',
          null,
          events.map((e) => {
            const at = tree.offset(e.unix_nanos);
            const attrs = Object.entries(e.attributes || {});
            return h(
              'tr',
              { 'data-testid': 'span-event' },
              h('td', { class: 'nowrap', title: fullTimeMs(Number(e.unix_nanos) / 1e6) }, fmtOffset(at), h('div', { class: 'sub' }, `${fmtOffset(at - node.start)} in span`)),
              h('td', { class: 'strong', 'data-testid': 'span-event-name' }, e.name),
              h('td', null, attrs.length ? h('dl', { class: 'kv kv-compact' }, attrs.map(([k, v]) => [h('dt', { class: 'mono' }, k), h('dd', null, valueEl(v))])) : h('span', { class: 'muted' }, '—')),
            );
          }),
        ),
      ),
    );
  }

  function attrTable(title, list, testid, none, hint) {
    return h(
      'div',
      { class: 'wf-section', 'data-testid': testid },
      h('h3', { title: hint || null }, `${title} `, h('span', { class: 'muted' }, String(list.length))),
      list.length
        ? h(
            'table',
            { class: 'table attr-table' },
            h(
              'tbody',
              null,
              list.map(([k, v]) => h('tr', { 'data-testid': 'span-attr', 'data-key': k }, h('td', { class: 'mono attr-key' }, k), h('td', { class: 'attr-value', 'data-testid': 'span-attr-value' }, valueEl(v)))),
            ),
          )
        : h('div', { class: 'muted wf-none' }, none),
    );
  }

  // Finding -----------------------------------------------------------------------------------
  const texts = new Array(n);
  function textOf(i) {
    if (texts[i] === undefined) {
      const s = nodes[i].span;
      texts[i] = [s.service, s.name, s.span_id, s.status_message, ...Object.entries(s.attributes || {}).map(([k, v]) => `${k}=${v}`)].join('\n').toLowerCase();
    }
    return texts[i];
  }

  function find(query) {
    const q = query.trim().toLowerCase();
    for (const i of matches) rows[i].classList.remove('match');
    matches = [];
    wrap.classList.toggle('finding', !!q);
    if (!q) {
      findCount.textContent = '';
      return;
    }
    for (let i = 0; i < n; i++) {
      if (textOf(i).includes(q)) {
        matches.push(i);
        rows[i].classList.add('match');
      }
    }
    findCount.textContent = matches.length ? plural(matches.length, 'match', 'matches') : 'no match';
  }

  function nextMatch() {
    if (!matches.length) return;
    const i = matches.find((m) => m > active) ?? matches[0];
    reveal(i);
    focusRow(i, true);
  }

  // Keyboard ------------------------------------------------------------------------------------
  function setActive(i) {
    if (rows[active]) rows[active].tabIndex = -1;
    active = i;
    rows[i].tabIndex = 0;
  }

  function focusRow(i, scroll) {
    setActive(i);
    rows[i].focus({ preventScroll: !scroll });
    if (scroll) rows[i].scrollIntoView({ block: 'nearest' });
  }

  function step(i, dir) {
    for (let j = i + dir; j >= 0 && j < n; j += dir) if (!rows[j].hidden) return j;
    return i;
  }

  bodyEl.addEventListener('click', (ev) => {
    const row = ev.target.closest('.wf-row');
    if (!row || !bodyEl.contains(row)) return;
    const i = Number(row.dataset.index);
    if (ev.target.closest('.wf-toggle')) {
      setCollapsed(i, !collapsed.has(i));
      setActive(i);
      return;
    }
    setActive(i);
    openDetail(i);
  });

  bodyEl.addEventListener('keydown', (ev) => {
    const row = ev.target;
    if (!row.classList || !row.classList.contains('wf-row')) return;
    const i = Number(row.dataset.index);
    const node = nodes[i];
    let to = -1;
    switch (ev.key) {
      case 'ArrowDown':
        to = step(i, 1);
        break;
      case 'ArrowUp':
        to = step(i, -1);
        break;
      case 'Home':
        to = 0;
        break;
      case 'End':
        to = step(n, -1);
        break;
      case 'ArrowRight':
        if (node.children.length && collapsed.has(i)) setCollapsed(i, false);
        else if (node.children.length) to = i + 1;
        break;
      case 'ArrowLeft':
        if (node.children.length && !collapsed.has(i)) setCollapsed(i, true);
        else if (node.parent) to = node.parent.index;
        break;
      case 'Enter':
      case ' ':
        openDetail(i);
        break;
      default:
        return;
    }
    ev.preventDefault();
    if (to >= 0) focusRow(to, true);
  });

  // Resizing the name column ------------------------------------------------------------------
  const wrap = h('div', { class: 'wf' });
  let nameW = 32; // % of the waterfall's width
  const setNameW = (v) => {
    nameW = Math.min(70, Math.max(15, v));
    wrap.style.setProperty('--wf-name-w', `${nameW}%`);
    resizer.setAttribute('aria-valuenow', String(Math.round(nameW)));
  };
  setNameW(nameW);
  resizer.addEventListener('pointerdown', (ev) => {
    ev.preventDefault();
    resizer.setPointerCapture(ev.pointerId);
    const rect = wrap.getBoundingClientRect();
    const move = (e) => setNameW(((e.clientX - rect.left) / rect.width) * 100);
    const up = () => {
      resizer.removeEventListener('pointermove', move);
      resizer.removeEventListener('pointerup', up);
    };
    resizer.addEventListener('pointermove', move);
    resizer.addEventListener('pointerup', up);
  });
  resizer.addEventListener('keydown', (ev) => {
    if (ev.key === 'ArrowLeft' || ev.key === 'ArrowRight') {
      ev.preventDefault();
      setNameW(nameW + (ev.key === 'ArrowLeft' ? -2 : 2));
    }
  });

  // The panel -----------------------------------------------------------------------------------
  const visibleCount = h('span', { class: 'panel-count', 'data-testid': 'waterfall-visible' });
  const findInput = h('input', {
    type: 'search',
    class: 'input input-sm',
    placeholder: 'Find in trace',
    'aria-label': 'Find spans by service, operation, id or attribute',
    'data-testid': 'trace-find',
    oninput: () => {
      clearTimeout(findTimer);
      findTimer = setTimeout(() => find(findInput.value), n > 500 ? 150 : 0);
    },
    onkeydown: (ev) => {
      if (ev.key === 'Enter') {
        ev.preventDefault();
        clearTimeout(findTimer);
        find(findInput.value);
        nextMatch();
      }
    },
  });
  const findCount = h('span', { class: 'panel-hint', 'data-testid': 'trace-find-count', 'aria-live': 'polite' });
  const cpToggle = h('input', { type: 'checkbox', checked: true, 'data-testid': 'critical-path-toggle', onchange: () => wrap.classList.toggle('no-cp', !cpToggle.checked) });
  const missing = h('div', { 'data-testid': 'span-missing' });
  wrap.append(headRow, bodyEl);
  const el = h(
    'section',
    { class: 'panel wf-panel' },
    h(
      'div',
      { class: 'panel-head wf-toolbar' },
      h('h2', null, 'Timeline'),
      visibleCount,
      h('button', { type: 'button', class: 'btn btn-sm', 'data-testid': 'expand-all', onclick: expandAll }, 'Expand all'),
      h('button', { type: 'button', class: 'btn btn-sm', 'data-testid': 'collapse-all', onclick: collapseAll }, 'Collapse all'),
      h('label', { class: 'wf-legend', title: 'The spans the end of the trace waited on' }, cpToggle, h('span', { class: 'wf-legend-cp' }), 'Critical path'),
      h('span', { class: 'wf-legend' }, h('span', { class: 'wf-legend-err' }, '!'), 'Error'),
      h('div', { class: 'spacer' }),
      findInput,
      findCount,
    ),
    missing,
    wrap,
  );
  visibleCount.textContent = `${plural(n, 'row')} of ${n}`;

  return {
    el,
    select,
    destroy() {
      clearTimeout(findTimer);
    },
  };
}

/** An attribute value: numbers and booleans as such, JSON text pretty-printed. */
function valueEl(v) {
  if (typeof v === 'number') return h('span', { class: 'attr-num' }, String(v));
  if (typeof v === 'boolean') return h('span', { class: 'attr-bool' }, String(v));
  if (v === null || v === undefined) return h('span', { class: 'muted' }, 'null');
  const s = String(v);
  if ((s.startsWith('{') && s.endsWith('}')) || (s.startsWith('[') && s.endsWith(']'))) {
    try {
      return h('pre', { class: 'attr-json' }, JSON.stringify(JSON.parse(s), null, 2));
    } catch {
      // Not JSON after all.
    }
  }
  return h('span', { class: 'attr-str' }, s);
}
