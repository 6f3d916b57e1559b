// Every URL that leads from one signal to another is built here, so a page never spells
// another page's query parameters. Ranges are `{ since }` (relative, e.g. '1h') or
// `{ start, end }` (Unix ms as strings); `end` empty means "until now".
//
//   serviceUrl('orders', { since: '1h' })                  the service page
//   logsUrl({ query: 'service:orders level:error', start, end })
//   traceUrl(traceId, spanId)                              a trace, optionally a span in it
//   tracesUrl({ service, operation, errors: true, start, end })
//   mapUrl({ edge: { from: 'web', to: 'orders' }, since: '15m' })
//   metricsUrl({ query: 'rate(x[5m])', start, end })
//   alertsUrl()
//
// A range widened around a moment: `around(ms, beforeMs, afterMs)` -> { start, end }.

const seg = encodeURIComponent;

function writeRange(p, r = {}) {
  if (r.start) {
    p.set('start', String(r.start));
    if (r.end) p.set('end', String(r.end));
  } else if (r.since) {
    p.set('since', r.since);
  }
  return p;
}

/** `{ start, end }` (Unix ms strings) from `ms - beforeMs` to `ms + afterMs`. */
export function around(ms, beforeMs = 5 * 60e3, afterMs = 5 * 60e3) {
  const at = Number(ms);
  return { start: String(Math.floor(at - beforeMs)), end: String(Math.ceil(at + afterMs)) };
}

/** A service's page. */
export function serviceUrl(name, range = {}) {
  const p = writeRange(new URLSearchParams(), range).toString();
  return `/services/${seg(name)}${p ? `?${p}` : ''}`;
}

/** The Logs page with a query (docs/log-queries.md) over a range. */
export function logsUrl({ query = '', ...range } = {}) {
  const p = new URLSearchParams({ query });
  writeRange(p, range.start || range.since ? range : { since: '1h' });
  return `/logs?${p}`;
}

/** The logs of one service, errors only when `errors`. */
export function serviceLogsUrl(service, { errors = false, ...range } = {}) {
  return logsUrl({ query: `service:${quoteTerm(service)}${errors ? ' level:error' : ''}`, ...range });
}

/** The logs that carry a trace id (and a span id when given). */
export function traceLogsUrl(traceId, spanId, range = {}) {
  return logsUrl({ query: spanId ? `trace_id:${traceId} span_id:${spanId}` : `trace_id:${traceId}`, ...range });
}

/** One trace; `spanId` selects a span in its waterfall. */
export function traceUrl(traceId, spanId) {
  return `/traces/${seg(traceId)}${spanId ? `?span=${seg(spanId)}` : ''}`;
}

/** The trace search. `errors`: failing traces only. `peer`: traces that cross service -> peer. */
export function tracesUrl({ service = '', operation = '', errors = false, tags = [], limit, ...range } = {}) {
  const p = new URLSearchParams();
  if (service) p.set('service', service);
  if (operation) p.set('operation', operation);
  for (const t of tags) p.append('tag', t);
  if (range.start) {
    p.set('start', String(range.start));
    if (range.end) p.set('end', String(range.end));
  } else {
    p.set('lookback', range.since || '1h');
  }
  if (limit) p.set('limit', String(limit));
  if (errors) p.set('errors', '1');
  return `/traces?${p}`;
}

/** The service map; `edge` ({from, to}) or `node` selects one. */
export function mapUrl({ edge, node, ...range } = {}) {
  const p = writeRange(new URLSearchParams(), range);
  if (edge) p.set('edge', `${edge.from}>${edge.to}`);
  if (node) p.set('node', node);
  const s = p.toString();
  return `/map${s ? `?${s}` : ''}`;
}

/** The Metrics page with a PromQL query over a range. */
export function metricsUrl({ query = '', step, ...range } = {}) {
  const p = new URLSearchParams({ query });
  writeRange(p, range.start || range.since ? range : { since: '1h' });
  if (step) p.set('step', String(step));
  return `/metrics-explorer?${p}`;
}

/** The Alerts page. */
export function alertsUrl() {
  return '/alerts';
}

/** A value as one term of the log query language (quoted when it holds spaces or quotes). */
function quoteTerm(v) {
  return /^[\w.\-/]+$/.test(v) ? v : `"${String(v).replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** One configuration key's page (its editor and history). */
export function configUrl(application, profile, key) {
  return `/config/${seg(application)}/${seg(profile)}/${seg(key)}`;
}

/** The overview; `q` filters services by name, `attention` keeps those needing it. */
export function overviewUrl({ q = '', attention = false, ...range } = {}) {
  const p = new URLSearchParams();
  if (range.start || range.since) writeRange(p, range);
  if (q) p.set('q', q);
  if (attention) p.set('attention', '1');
  const s = p.toString();
  return `/${s ? `?${s}` : ''}`;
}
