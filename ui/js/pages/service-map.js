// The service map: who calls whom over a window (GET /api/service-map), edges labelled with
// rate, error ratio and p99 and coloured by health, nodes by health and alerts; a stable
// layered layout (components/graph-layout.js) kept between refreshes; click an edge for its
// metrics, failing and recent traces (GET /api/service-map/edge) and logs; click a node for
// its figures and its service page. URL: /map?since=15m&edge=web>orders (links.js mapUrl).

import { h, setChildren, notice, empty, svg } from '../dom.js';
import { api } from '../api.js';
import { navigate } from '../router.js';
import { serviceUrl, serviceLogsUrl, traceUrl, tracesUrl, metricsUrl, mapUrl, alertsUrl } from '../links.js';
import { timeRange, readRange } from '../components/time-range.js';
import { graphLayout, edgePath, NODE_W, NODE_H } from '../components/graph-layout.js';
import { fmtRate, fmtPct, fmtMs, healthBadge } from '../components/red.js';
import { machineTroubleMark } from '../components/hosts.js';

const REFRESH_MS = 10_000;
/** Above this many edges, labels show only on unhealthy, hovered and selected edges. */
const ALL_LABELS_UP_TO = 40;

function readState(search) {
  const p = new URLSearchParams(search || '');
  const r = readRange(p);
  if (!p.get('since') && !p.get('start')) r.since = '15m';
  const edge = p.get('edge') || '';
  const i = edge.indexOf('>');
  return {
    range: r,
    edge: i > 0 ? { from: edge.slice(0, i), to: edge.slice(i + 1) } : null,
    node: p.get('node') || '',
    live: p.get('live') !== '0',
  };
}

function rangeArg(r) {
  return r.start ? { start: r.start, end: r.end || undefined } : { since: r.since };
}

function stateUrl(st) {
  const url = mapUrl({ ...rangeArg(st.range), edge: st.edge || undefined, node: st.node || undefined });
  return st.live ? url : `${url}${url.includes('?') ? '&' : '?'}live=0`;
}

function rangeQuery(r) {
  const p = new URLSearchParams();
  if (r.start) {
    p.set('start', r.start);
    if (r.end) p.set('end', r.end);
  } else p.set('since', r.since);
  return p.toString();
}

function edgeLabel(e) {
  const parts = [fmtRate(e.rate_rps)];
  if (e.error_ratio) parts.push(fmtPct(e.error_ratio));
  if (e.p99_ms !== null && e.p99_ms !== undefined) parts.push(`p99 ${fmtMs(e.p99_ms)}`);
  return parts.join(' · ');
}

/** The drawing's height: the graph's, within bounds (the rest pans and zooms). */
function stageHeight(l) {
  return Math.max(360, Math.min(760, l.height + 50));
}

/** A service name as one term of the log query language. */
function logTerm(v) {
  return /^[\w.\-/]+$/.test(v) ? v : `"${v.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

function strokeWidth(rate, maxRate) {
  if (!rate || !maxRate) return 1.25;
  return 1.25 + 3.75 * (Math.log1p(rate) / Math.log1p(maxRate));
}

export default {
  title: 'Service map',
  mount(main, params) {
    let st = readState(params.search);
    const layout = graphLayout();
    let data = null;
    let loadError = null;
    let timer = 0;
    let seq = 0;
    let edgeSeq = 0;
    let edgeDetail = null; // { key, data, error }
    let zoom = 1;
    let pan = { x: 0, y: 0 };
    let hover = '';

    const picker = timeRange({ onChange: (r) => go({ ...st, range: r }), testid: 'map-range' });
    const liveBox = h('input', { type: 'checkbox', 'data-testid': 'map-live', checked: st.live, onchange: () => go({ ...st, live: liveBox.checked }, true) });
    const updated = h('span', { class: 'panel-hint', 'data-testid': 'map-updated' });
    const problems = h('div', { 'data-testid': 'map-problems' });
    const stage = h('div', { class: 'map-stage', 'data-testid': 'map-stage' });
    const side = h('aside', { class: 'map-side panel', 'data-testid': 'map-side', hidden: true });
    const legend = h(
      'div',
      { class: 'map-legend' },
      ['ok', 'warn', 'fail', 'idle'].map((k) => h('span', { class: `legend-item` }, h('span', { class: `legend-swatch edge-${k}` }), { ok: 'healthy', warn: 'degraded', fail: 'failing', idle: 'no traffic' }[k])),
      h('span', { class: 'legend-item muted' }, 'dashed: through the gateway'),
    );
    const zoomBtn = (label, title, f, testid) => h('button', { type: 'button', class: 'btn btn-sm', title, 'data-testid': testid, onclick: f }, label);

    setChildren(
      main,
      h(
        'div',
        { class: 'page-head' },
        h('h1', null, 'Service map'),
        h('label', { class: 'check-label', title: 'Refresh every 10 seconds' }, liveBox, ' Live'),
        updated,
        h('div', { class: 'page-head-spacer' }),
        picker.chip,
        picker.el,
      ),
      problems,
      h(
        'div',
        { class: 'map-layout' },
        h(
          'section',
          { class: 'panel map-panel' },
          h(
            'div',
            { class: 'panel-head' },
            legend,
            h('div', { class: 'page-head-spacer' }),
            zoomBtn('−', 'Zoom out', () => setZoom(zoom / 1.25), 'map-zoom-out'),
            zoomBtn('Fit', 'Fit the graph', () => fit(), 'map-zoom-fit'),
            zoomBtn('+', 'Zoom in', () => setZoom(zoom * 1.25), 'map-zoom-in'),
          ),
          stage,
        ),
        side,
      ),
    );

    function go(next, replace = false) {
      navigate(stateUrl(next), { replace });
    }

    let svgEl = null;
    let world = null;
    function applyTransform() {
      if (world) world.setAttribute('transform', `translate(${pan.x},${pan.y}) scale(${zoom})`);
    }
    function setZoom(z) {
      zoom = Math.min(3, Math.max(0.25, z));
      applyTransform();
    }
    function fit() {
      if (!data || !svgEl) return;
      const l = layout.run(
        data.nodes.map((n) => n.id),
        data.edges,
      );
      const W = stage.clientWidth || 900;
      const H = stageHeight(l);
      zoom = Math.min(1, Math.max(0.25, Math.min(W / (l.width + 20), H / (l.height + 50))));
      pan = { x: Math.max(0, (W - l.width * zoom) / 2), y: Math.max(0, (H - (l.height + 30) * zoom) / 2) };
      applyTransform();
    }

    // Drag to pan, wheel to zoom.
    let drag = null;
    stage.addEventListener('pointerdown', (ev) => {
      if (ev.target.closest('.map-node, .map-edge, .map-edge-label')) return;
      drag = { x: ev.clientX - pan.x, y: ev.clientY - pan.y };
      stage.setPointerCapture(ev.pointerId);
    });
    stage.addEventListener('pointermove', (ev) => {
      if (!drag) return;
      pan = { x: ev.clientX - drag.x, y: ev.clientY - drag.y };
      applyTransform();
    });
    stage.addEventListener('pointerup', () => (drag = null));
    stage.addEventListener(
      'wheel',
      (ev) => {
        if (!ev.ctrlKey && !ev.metaKey) return; // plain wheel scrolls the page
        ev.preventDefault();
        const rect = stage.getBoundingClientRect();
        const px = ev.clientX - rect.left;
        const py = ev.clientY - rect.top;
        const z = Math.min(3, Math.max(0.25, zoom * (ev.deltaY < 0 ? 1.15 : 1 / 1.15)));
        pan = { x: px - ((px - pan.x) * z) / zoom, y: py - ((py - pan.y) * z) / zoom };
        zoom = z;
        applyTransform();
      },
      { passive: false },
    );

    function paint() {
      liveBox.checked = st.live;
      const issues = [];
      if (loadError) issues.push(notice('error', `Could not load the service map: ${loadError}`, data ? ' (showing the last answer)' : ''));
      if (data) for (const p of data.problems) issues.push(notice('warning', p));
      setChildren(problems, issues);
      if (!data) {
        setChildren(stage, loadError ? empty('The service map is unavailable', 'The page retries every 10 seconds.') : h('div', { class: 'empty' }, 'Loading…'));
        paintSide();
        return;
      }
      if (!data.nodes.length) {
        setChildren(
          stage,
          h(
            'div',
            { 'data-testid': 'map-empty' },
            empty('No services to draw yet', 'The map is built from traces (send spans over OTLP or Zipkin) and from the gateway’s traffic (route requests through it). ', 'Run ', h('code', null, 'signalbox demo'), ' to see one.'),
          ),
        );
        svgEl = null;
        world = null;
        paintSide();
        return;
      }
      const firstDraw = !svgEl;
      const l = layout.run(
        data.nodes.map((n) => n.id),
        data.edges,
      );
      const byId = new Map(data.nodes.map((n) => [n.id, n]));
      const maxRate = Math.max(0, ...data.edges.map((e) => e.rate_rps || 0));
      const selectedEdge = st.edge ? `${st.edge.from}>${st.edge.to}` : '';
      const allLabels = data.edges.length <= ALL_LABELS_UP_TO;
      // Parallel edges a>b and b>a get opposite lanes so both stay visible.
      const pairs = new Set(data.edges.map((e) => `${e.from}>${e.to}`));
      const defs = svg(
        'defs',
        null,
        ['ok', 'warn', 'fail', 'idle', 'sel'].map((k) => svg('marker', { id: `arrow-${k}`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse' }, svg('path', { d: 'M0,0 L10,5 L0,10 z', class: `arrow arrow-${k}` }))),
      );
      const edgeEls = [];
      const labelEls = [];
      for (const e of data.edges) {
        const a = l.nodes.get(e.from);
        const b = l.nodes.get(e.to);
        if (!a || !b) continue;
        const lane = pairs.has(`${e.to}>${e.from}`) ? (e.from < e.to ? -6 : 6) : 0;
        const geo = edgePath(a, b, l.edges.find((x) => x.from === e.from && x.to === e.to)?.back, lane);
        const id = `${e.from}>${e.to}`;
        const sel = id === selectedEdge;
        const cls = `map-edge edge-${e.health}${e.via === 'gateway' ? ' via-gateway' : ''}${sel ? ' selected' : ''}`;
        const onclick = () => go({ ...st, edge: { from: e.from, to: e.to }, node: '' });
        const onmouseenter = () => {
          hover = id;
          g.classList.add('hover');
        };
        const onmouseleave = () => {
          hover = '';
          g.classList.remove('hover');
        };
        const g = svg(
          'g',
          { class: cls, 'data-testid': 'map-edge', 'data-edge': id, 'data-health': e.health, onclick, onmouseenter, onmouseleave },
          svg('title', null, `${e.from} → ${e.to}${e.via === 'gateway' ? ' (through the gateway)' : ''}\n${edgeLabel(e)}`),
          svg('path', { d: geo.d, class: 'map-edge-line', 'stroke-width': strokeWidth(e.rate_rps, maxRate).toFixed(2), 'marker-end': `url(#arrow-${sel ? 'sel' : e.health})` }),
          svg('path', { d: geo.d, class: 'map-edge-hit' }),
        );
        edgeEls.push(g);
        const showLabel = allLabels || sel || hover === id || e.health === 'fail' || e.health === 'warn';
        const text = edgeLabel(e);
        const w = text.length * 6.2 + 10;
        labelEls.push(
          svg(
            'g',
            { class: `map-edge-label edge-${e.health}${showLabel ? '' : ' label-hidden'}${sel ? ' selected' : ''}`, 'data-testid': 'map-edge-label', 'data-edge': id, transform: `translate(${geo.mx.toFixed(1)},${geo.my.toFixed(1)})`, onclick },
            svg('rect', { x: -w / 2, y: -9, width: w, height: 17, rx: 3 }),
            svg('text', { x: 0, y: 4, 'text-anchor': 'middle' }, text),
          ),
        );
      }
      const outRate = new Map();
      for (const e of data.edges) outRate.set(e.from, (outRate.get(e.from) || 0) + (e.rate_rps || 0));
      const nodeEls = data.nodes.map((n) => {
        const p = l.nodes.get(n.id);
        const firing = (n.alerts || []).filter((a) => a.state === 'firing').length;
        const sel = st.node === n.id || (st.edge && (st.edge.from === n.id || st.edge.to === n.id));
        const out = outRate.get(n.id) || 0;
        const sub =
          n.kind === 'gateway'
            ? `gateway${out ? ` · ${fmtRate(out)} out` : ''}`
            : n.rate_rps
              ? `${fmtRate(n.rate_rps)} · ${fmtPct(n.error_ratio)} errors`
              : out
                ? `calls ${fmtRate(out)}`
                : n.instances.total
                  ? `${n.instances.passing}/${n.instances.total} instances passing`
                  : 'no traffic';
        const name = n.id.length > 22 ? `${n.id.slice(0, 21)}…` : n.id;
        const troubled = n.machine_trouble || [];
        return svg(
          'g',
          {
            class: `map-node node-${n.status} kind-${n.kind}${sel ? ' selected' : ''}`,
            'data-testid': 'map-node',
            'data-node': n.id,
            'data-status': n.status,
            transform: `translate(${p.x},${p.y})`,
            onclick: () => go({ ...st, node: n.id, edge: null }),
            ondblclick: () => n.kind === 'service' && navigate(serviceUrl(n.id, rangeArg(st.range))),
          },
          svg('title', null, `${n.id}${n.reasons && n.reasons.length ? `\n${n.reasons.join('\n')}` : ''}\nDouble-click for the service page`),
          svg('rect', { width: NODE_W, height: NODE_H, rx: n.kind === 'gateway' ? 14 : 6, class: 'map-node-box' }),
          svg('rect', { width: 5, height: NODE_H, rx: 2, class: 'map-node-bar' }),
          svg('text', { x: 14, y: 20, class: 'map-node-name' }, name),
          svg('text', { x: 14, y: 37, class: 'map-node-sub' }, sub),
          firing ? svg('g', { transform: `translate(${NODE_W - 14},0)`, class: 'map-node-alert', 'data-testid': 'map-node-alerts' }, svg('circle', { r: 10, cy: 0 }), svg('text', { y: 4, 'text-anchor': 'middle' }, String(firing))) : null,
          troubled.length
            ? svg(
                'g',
                { transform: `translate(${NODE_W - (firing ? 38 : 14)},0)`, class: 'map-node-machine', 'data-testid': 'map-node-machine-trouble' },
                svg('title', null, troubled.map((t) => `machine ${t.host}${t.instance ? ` (${t.instance})` : ''}: ${t.reasons.join('; ')}`).join('\n')),
                svg('rect', { x: -10, y: -10, width: 20, height: 20, rx: 4 }),
                svg('text', { y: 4, 'text-anchor': 'middle' }, 'H'),
              )
            : null,
        );
      });
      world = svg('g', { class: 'map-world' }, svg('g', { class: 'map-edges' }, edgeEls), svg('g', { class: 'map-nodes' }, nodeEls), svg('g', { class: 'map-labels' }, labelEls));
      const H = stageHeight(l);
      svgEl = svg('svg', { class: 'map-svg', width: '100%', height: H, 'data-testid': 'map-svg', 'data-nodes': data.nodes.length, 'data-edges': data.edges.length }, defs, world);
      setChildren(stage, svgEl);
      if (firstDraw) fit();
      else applyTransform();
      paintSide();
    }

    function metricRow(label, value, testid, level) {
      return h('div', { class: 'kv-row' }, h('span', { class: 'kv-key' }, label), h('span', { class: `kv-val${level ? ` level-${level}` : ''}`, 'data-testid': testid }, value));
    }

    // The side panel is rebuilt only when what it shows changes (a refresh with the same
    // figures keeps its links and focus in place).
    let sideKey = '';
    function showSide(show) {
      if (side.hidden === !show) return;
      side.hidden = !show;
      // The drawing's width changed: fit the graph to it again.
      requestAnimationFrame(fit);
    }
    function paintSide() {
      if (!data || (!st.edge && !st.node)) {
        showSide(false);
        sideKey = '';
        return;
      }
      showSide(true);
      const shown = st.node
        ? data.nodes.find((x) => x.id === st.node)
        : [data.edges.find((x) => x.from === st.edge.from && x.to === st.edge.to), edgeDetail && edgeDetail.key === `${st.edge.from}>${st.edge.to}|${rangeQuery(st.range)}` ? edgeDetail : null];
      const nextKey = JSON.stringify([st.node, st.edge, rangeQuery(st.range), shown]);
      if (nextKey === sideKey) return;
      sideKey = nextKey;
      const range = rangeArg(st.range);
      const close = h('button', { type: 'button', class: 'btn btn-sm', 'aria-label': 'Close', 'data-testid': 'map-side-close', onclick: () => go({ ...st, edge: null, node: '' }) }, '×');
      if (st.node) {
        const n = data.nodes.find((x) => x.id === st.node);
        if (!n) {
          setChildren(side, h('div', { class: 'panel-head' }, h('h2', null, st.node), close), empty('Not in this window', 'This service has no traffic, instances or spans in the selected window.'));
          return;
        }
        setChildren(
          side,
          h('div', { class: 'panel-head' }, h('h2', { 'data-testid': 'map-side-title' }, n.id), close),
          h(
            'div',
            { class: 'map-side-body' },
            h('div', null, healthBadge(n.status, 'map-side-status'), ' ', machineTroubleMark(n.machine_trouble, 'map-side-machine-trouble'), n.reasons.length ? h('div', { class: 'reasons' }, n.reasons.join(' · ')) : null),
            metricRow('Requests (gateway)', fmtRate(n.rate_rps), 'map-node-rate'),
            metricRow('Errors', fmtPct(n.error_ratio), 'map-node-errors'),
            metricRow('p99', fmtMs(n.p99_ms), 'map-node-p99'),
            metricRow('Instances', n.instances.total ? `${n.instances.passing} of ${n.instances.total} passing` : '–', 'map-node-instances'),
            n.alerts.length ? h('div', { class: 'map-side-alerts' }, n.alerts.map((a) => h('div', null, h('a', { href: alertsUrl() }, a.name), ` ${a.state}`))) : null,
            h(
              'div',
              { class: 'link-list' },
              n.kind === 'service' ? h('a', { class: 'btn btn-primary', href: serviceUrl(n.id, range), 'data-testid': 'map-node-service-link' }, 'Open the service page') : null,
              h('a', { href: tracesUrl({ service: n.id, ...range }) }, 'Traces'),
              h('a', { href: serviceLogsUrl(n.id, range) }, 'Logs'),
            ),
          ),
        );
        return;
      }
      const key = `${st.edge.from}>${st.edge.to}`;
      const e = data.edges.find((x) => x.from === st.edge.from && x.to === st.edge.to);
      const detail = edgeDetail && edgeDetail.key === `${key}|${rangeQuery(st.range)}` ? edgeDetail : null;
      const traceList = (list, testid, what) =>
        !list.length
          ? h('div', { class: 'muted small', 'data-testid': `${testid}-empty` }, `No ${what} across this edge in the window.`)
          : h(
              'ul',
              { class: 'trace-list', 'data-testid': testid },
              list.map((t) =>
                h(
                  'li',
                  null,
                  h('a', { href: traceUrl(t.trace_id), class: 'mono', 'data-testid': `${testid}-link` }, t.trace_id.slice(0, 16)),
                  ' ',
                  h('span', { class: t.call_error ? 'status-text-critical' : 'muted' }, t.call_error ? 'error' : 'ok'),
                  ' ',
                  h('span', { class: 'muted' }, `${t.root_service}: ${t.root_operation} · ${fmtMs(t.call_duration_ms)}`),
                ),
              ),
            );
      setChildren(
        side,
        h('div', { class: 'panel-head' }, h('h2', { 'data-testid': 'map-side-title' }, `${st.edge.from} → ${st.edge.to}`), close),
        h(
          'div',
          { class: 'map-side-body' },
          e
            ? [
                h('div', null, healthBadge(e.health, 'map-side-status'), ' ', h('span', { class: 'muted' }, e.via === 'gateway' ? 'through the gateway' : 'direct call')),
                metricRow('Rate', fmtRate(e.rate_rps), 'map-edge-rate'),
                metricRow('Errors', fmtPct(e.error_ratio), 'map-edge-errors', e.health === 'idle' ? '' : e.error_ratio >= data.thresholds.error_fail ? 'fail' : e.error_ratio >= data.thresholds.error_warn ? 'warn' : ''),
                metricRow('p50', fmtMs(e.p50_ms), 'map-edge-p50'),
                metricRow('p99', fmtMs(e.p99_ms), 'map-edge-p99'),
                metricRow('Calls in window', String(e.calls), 'map-edge-calls'),
                h('div', { class: 'muted small' }, `Source: ${e.source === 'gateway' ? 'the gateway’s metrics' : e.source === 'traces' ? 'traces' : 'traces, rates from the gateway’s metrics'}`),
              ]
            : notice('info', 'This edge has no traffic in the selected window.'),
          h('h3', null, 'Failing traces'),
          detail ? (detail.error ? notice('error', detail.error) : traceList(detail.data.failing_traces, 'map-edge-failing', 'failing calls')) : h('div', { class: 'muted' }, 'Loading…'),
          h('h3', null, 'Recent traces'),
          detail ? (detail.error ? null : traceList(detail.data.recent_traces, 'map-edge-recent', 'calls')) : h('div', { class: 'muted' }, 'Loading…'),
          h('h3', null, `Error logs of ${st.edge.to}`),
          !detail || detail.error
            ? null
            : detail.logs === null
              ? h('div', { class: 'muted small' }, 'The logs could not be read.')
              : detail.logs.length
                ? h(
                    'ul',
                    { class: 'log-lines side-logs', 'data-testid': 'map-edge-log-lines' },
                    detail.logs.map((r) => h('li', { title: String(r.body) }, h('span', { class: 'muted mono' }, new Date(Number(BigInt(r.unix_nanos) / 1000000n)).toLocaleTimeString()), ' ', String(r.body).slice(0, 200), r.trace_id ? [' ', h('a', { href: traceUrl(r.trace_id, r.span_id) }, 'trace')] : null)),
                  )
                : h('div', { class: 'muted small', 'data-testid': 'map-edge-log-none' }, 'No error logs in the window.'),
          h(
            'div',
            { class: 'link-list' },
            h('a', { href: serviceLogsUrl(st.edge.to, { errors: true, ...range }), 'data-testid': 'map-edge-logs' }, `All error logs of ${st.edge.to}`),
            h('a', { href: serviceLogsUrl(st.edge.from, range) }, `Logs of ${st.edge.from}`),
            detail && !detail.error ? h('a', { href: metricsUrl({ query: detail.data.queries.rate, ...range }), 'data-testid': 'map-edge-metrics' }, `Request rate of ${st.edge.to}`) : null,
            h('a', { href: tracesUrl({ service: st.edge.to, errors: true, ...range }) }, `All failing traces of ${st.edge.to}`),
            st.edge.to !== data.gateway ? h('a', { href: serviceUrl(st.edge.to, range) }, `Service page of ${st.edge.to}`) : null,
          ),
        ),
      );
    }

    async function loadEdge() {
      if (!st.edge) return;
      const key = `${st.edge.from}>${st.edge.to}|${rangeQuery(st.range)}`;
      const mine = ++edgeSeq;
      const q = new URLSearchParams(rangeQuery(st.range));
      q.set('from', st.edge.from);
      q.set('to', st.edge.to);
      const lq = new URLSearchParams(rangeQuery(st.range));
      lq.set('query', `service:${logTerm(st.edge.to)} level:error`);
      lq.set('limit', '5');
      try {
        const [d, logs] = await Promise.all([api('GET', `/api/service-map/edge?${q}`), api('GET', `/api/logs?${lq}`).then((r) => r.records || [], () => null)]);
        if (mine !== edgeSeq) return;
        edgeDetail = { key, data: d, logs, error: null };
      } catch (e) {
        if (mine !== edgeSeq || e.status === 401) return;
        edgeDetail = { key, data: null, error: `Could not load the edge’s traces: ${e.message}` };
      }
      paintSide();
    }

    async function load() {
      clearTimeout(timer);
      const mine = ++seq;
      try {
        const d = await api('GET', `/api/service-map?${rangeQuery(st.range)}`);
        if (mine !== seq) return;
        data = d;
        loadError = null;
        updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
      } catch (e) {
        if (mine !== seq || e.status === 401) return;
        loadError = e.message;
      }
      paint();
      if (st.live && (!st.range.start || !st.range.end)) timer = setTimeout(() => load().then(loadEdge), REFRESH_MS);
    }

    picker.set(st.range);
    paint();
    load();
    loadEdge();
    return {
      update(p) {
        const next = readState(p.search);
        const rangeChanged = JSON.stringify(next.range) !== JSON.stringify(st.range);
        const edgeChanged = JSON.stringify(next.edge) !== JSON.stringify(st.edge);
        const liveChanged = next.live !== st.live;
        st = next;
        picker.set(st.range);
        if (rangeChanged || liveChanged) load();
        else paint();
        if (rangeChanged || edgeChanged) loadEdge();
      },
      unmount() {
        clearTimeout(timer);
        seq++;
        edgeSeq++;
      },
    };
  },
};
