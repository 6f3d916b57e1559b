// Every URL that leads to a console page is built here, so a page never spells another
// page's query parameters (nor, for that matter, its own). Ranges are `{ since }` (relative,
// e.g. '1h') or `{ start, end }` (Unix ms as strings); `end` empty means "until now".
//
//   serviceUrl('orders', { since: '1h' })                  the service page
//   logsUrl({ query: 'service:orders level:error', start, end, limit, line })
//   serviceLogsUrl('orders', { errors: true, ...range })
//   traceLogsUrl(traceId, spanId, range)                   logs carrying a trace (and span) id
//   traceUrl(traceId, spanId)                              a trace, optionally a span in it
//   tracesUrl({ service, operation, errors: true, tags, limit, start, end })
//   mapUrl({ edge: { from: 'web', to: 'orders' }, since: '15m' })
//   metricsUrl({ query: 'rate(x[5m])', start, end, step, view, stacked })
//   serviceMetricsQuery('orders')                          the RED query of a service
//   alertUrls(labels, activeAtMs)                          where an alert leads
//   windowUrls(range, { service })                         logs / traces of a chart's window
//   alertsUrl(), targetsUrl()
//
// A range widened around a moment: `around(ms, beforeMs, afterMs)` -> { start, end }.

const seg = encodeURIComponent;

export const LOGS_DEFAULT_LIMIT = '1000';
const DEFAULT_SINCE = '1h';

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

/** The Logs page with a query (docs/log-queries.md) over a range; `line` opens one line. */
export function logsUrl({ query = '', limit, line, ...range } = {}) {
  const p = new URLSearchParams({ query });
  writeRange(p, range.start || range.since ? range : { since: DEFAULT_SINCE });
  if (limit && String(limit) !== LOGS_DEFAULT_LIMIT) p.set('limit', String(limit));
  if (line) p.set('line', String(line));
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

/** The trace search. `errors`: failing traces only. */
export function tracesUrl({ service = '', operation = '', errors = false, tags = [], limit, ...range } = {}) {
  const p = new URLSearchParams();
  if (service) p.set('service', service);
  if (operation) p.set('operation', operation);
  for (const t of tags) p.append('tag', t);
  if (range.start) {
    p.set('start', String(range.start));
    if (range.end) p.set('end', String(range.end));
  } else {
    p.set('lookback', range.since || DEFAULT_SINCE);
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

/** The Metrics page with a PromQL query over a range; `view` 'table', `stacked` true,
 * `hide` the names of series toggled off ('*': all). */
export function metricsUrl({ query = '', step, view, stacked, hide = [], ...range } = {}) {
  const p = new URLSearchParams({ query });
  writeRange(p, range.start || range.since ? range : { since: DEFAULT_SINCE });
  if (step) p.set('step', String(step));
  if (view === 'table') p.set('view', 'table');
  if (stacked) p.set('stacked', '1');
  for (const name of hide) p.append('hide', name);
  return `/metrics-explorer?${p}`;
}

/**
 * The RED query of a service, one PromQL expression charting its request rate, error rate
 * and p99 latency as three series (from the gateway's metrics, docs/metrics.md).
 */
export function serviceMetricsQuery(service) {
  return servicesMetricsQuery([service]);
}

/** The RED query of several services: three series per service, labelled `service` and `signal`. */
export function servicesMetricsQuery(services) {
  const names = Array.from(new Set(services.filter(Boolean)));
  const sel = names.length === 1 ? `service=${promString(names[0])}` : `service=~${promString(names.map(regexQuote).join('|'))}`;
  const by = names.length === 1 ? '' : ' by (service)';
  const q99 = names.length === 1 ? 'le' : 'le, service';
  return [
    `label_replace(sum${by} (rate(signalbox_gateway_requests_total{${sel}}[1m])), "signal", "requests/s", "", "")`,
    `label_replace(sum${by} (rate(signalbox_gateway_requests_total{${sel},class=~"5xx|error"}[1m])), "signal", "errors/s", "", "")`,
    `label_replace(histogram_quantile(0.99, sum by (${q99}) (rate(signalbox_gateway_request_duration_seconds_bucket{${sel}}[1m]))), "signal", "p99 seconds", "", "")`,
  ].join(' or ');
}

/** The Alerts page. */
export function alertsUrl() {
  return '/alerts';
}

/** The Targets page. */
export function targetsUrl() {
  return '/targets';
}

/** The service an alert is about: label `service`, else `job`. */
export function alertService(labels) {
  return (labels && (labels.service || labels.job)) || '';
}

/**
 * Where an alert leads: its service's page, logs, traces and RED metrics over the alert's
 * window — from `beforeMs` before it became active to now. Null without a service label.
 */
export function alertUrls(labels, activeAtMs, { now = Date.now(), beforeMs = 5 * 60e3 } = {}) {
  const service = alertService(labels);
  if (!service) return null;
  const from = (Number(activeAtMs) || now - 3600e3) - beforeMs;
  const range = { start: String(Math.round(from)), end: String(Math.round(now)) };
  return {
    service,
    range,
    service_page: serviceUrl(service, range),
    logs: serviceLogsUrl(service, range),
    traces: tracesUrl({ service, limit: 20, ...range }),
    metrics: metricsUrl({ query: serviceMetricsQuery(service), ...range }),
  };
}

/** The logs and traces of a chart's window (and of one service when the query names one). */
export function windowUrls(range, { service = '' } = {}) {
  return {
    logs: service ? serviceLogsUrl(service, range) : logsUrl({ query: '', ...range }),
    traces: tracesUrl({ service, limit: 20, ...range }),
  };
}

/** The service a PromQL query is about: the value of its one `service="..."` (or `job`) matcher. */
export function serviceOfQuery(query) {
  for (const label of ['service', 'job']) {
    const found = new Set();
    const re = new RegExp(`[{,]\\s*${label}\\s*=\\s*"((?:[^"\\\\]|\\\\.)*)"`, 'g');
    for (let m = re.exec(query || ''); m; m = re.exec(query)) found.add(m[1]);
    if (found.size === 1) return Array.from(found)[0];
  }
  return '';
}

/** A value as one term of the log query language (quoted when it holds spaces or quotes). */
function quoteTerm(v) {
  return /^[\w.\-/]+$/.test(v) ? v : `"${String(v).replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** A name as a literal inside a regular expression. */
function regexQuote(v) {
  return String(v).replace(/[.*+?^${}()|[\]\\]/g, (c) => `\\${c}`);
}

/** A PromQL string literal. */
function promString(v) {
  return `"${String(v).replace(/["\\]/g, (c) => `\\${c}`)}"`;
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
