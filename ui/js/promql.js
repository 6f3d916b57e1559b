// PromQL for the console: calls to the node's Prometheus HTTP API (/prometheus/api/v1/),
// and what the query editor completes at the caret (metric names, label names and values,
// functions, aggregations and keywords).

import { api } from './api.js';

export const PROM = '/prometheus/api/v1';

/**
 * GET `/prometheus/api/v1/{path}` with `params` (an object or URLSearchParams); resolves with
 * the envelope's `data`. Rejects with the ApiError of api.js, whose message is Prometheus's
 * error text and whose `body.errorType` its error type.
 */
export async function prom(path, params) {
  return (await promEnvelope(path, params)).data;
}

/** As prom(), resolving with the whole envelope (`data`, `warnings`, `infos`). */
export async function promEnvelope(path, params) {
  const qs = params ? `?${params instanceof URLSearchParams ? params : new URLSearchParams(params)}` : '';
  const res = await api('GET', `${PROM}/${path}${qs}`);
  if (!res || res.status !== 'success') throw new Error(res && res.error ? res.error : 'the answer is not a Prometheus API envelope');
  return res;
}

/** "bad_data: parse error ..." from an ApiError of the Prometheus API. */
export function promErrorText(e) {
  const type = e && e.body && typeof e.body === 'object' ? e.body.errorType : '';
  return type ? `${type}: ${e.message}` : e.message;
}

export const FUNCTIONS = [
  'abs', 'absent', 'absent_over_time', 'acos', 'acosh', 'asin', 'asinh', 'atan', 'atanh', 'avg_over_time', 'ceil', 'changes', 'clamp', 'clamp_max',
  'clamp_min', 'cos', 'cosh', 'count_over_time', 'day_of_month', 'day_of_week', 'day_of_year', 'days_in_month', 'deg', 'delta', 'deriv', 'exp', 'floor',
  'histogram_avg', 'histogram_count', 'histogram_fraction', 'histogram_quantile', 'histogram_stddev', 'histogram_stdvar', 'histogram_sum', 'holt_winters',
  'hour', 'idelta', 'increase', 'irate', 'label_join', 'label_replace', 'last_over_time', 'ln', 'log10', 'log2', 'mad_over_time', 'max_over_time',
  'min_over_time', 'minute', 'month', 'pi', 'predict_linear', 'present_over_time', 'quantile_over_time', 'rad', 'rate', 'resets', 'round', 'scalar', 'sgn',
  'sin', 'sinh', 'sort', 'sort_by_label', 'sort_by_label_desc', 'sort_desc', 'sqrt', 'stddev_over_time', 'stdvar_over_time', 'sum_over_time', 'tan',
  'tanh', 'time', 'timestamp', 'vector', 'year',
];
export const AGGREGATIONS = ['avg', 'bottomk', 'count', 'count_values', 'group', 'limitk', 'limit_ratio', 'max', 'min', 'quantile', 'stddev', 'stdvar', 'sum', 'topk'];
export const KEYWORDS = ['and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'bool'];

const IDENT = /[A-Za-z0-9_:]/;

/**
 * What to complete at `caret` in `text`:
 * - `{ kind: 'label', metric, prefix, from }` inside braces before an operator, or inside
 *   `by (...)`/`without (...)`/`on (...)`/`ignoring (...)`;
 * - `{ kind: 'value', metric, label, prefix, from, quote }` after `label=`, `!=`, `=~`, `!~`;
 * - `{ kind: 'name', prefix, from }` for a metric, function or keyword;
 * - null where nothing fits (in a number, a duration, a string after a function).
 * `from` is where the replaced text starts; `metric` the metric name before the braces.
 */
export function completionContext(text, caret) {
  const before = text.slice(0, caret);
  // Inside braces? Find an unclosed `{` outside strings.
  let brace = -1;
  let paren = [];
  let inStr = null;
  for (let i = 0; i < before.length; i++) {
    const c = before[i];
    if (inStr) {
      if (c === '\\') i++;
      else if (c === inStr) inStr = null;
      continue;
    }
    if (c === '"' || c === "'" || c === '`') inStr = c;
    else if (c === '{') brace = i;
    else if (c === '}') brace = -1;
    else if (c === '(') paren.push(i);
    else if (c === ')') paren.pop();
  }
  if (brace >= 0) {
    const metric = /([A-Za-z_:][A-Za-z0-9_:]*)\s*$/.exec(before.slice(0, brace));
    const inner = before.slice(brace + 1);
    const val = /([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(["']?)((?:[^"'\\]|\\.)*)$/.exec(inner);
    if (val) {
      const from = caret - val[4].length - val[3].length;
      return { kind: 'value', metric: metric ? metric[1] : '', label: val[1], prefix: val[4], from, quote: val[3] || '"' };
    }
    if (inStr) return null;
    const lbl = /(^|[{,\s])([A-Za-z_][A-Za-z0-9_]*)?$/.exec(inner);
    if (lbl) {
      const prefix = lbl[2] || '';
      return { kind: 'label', metric: metric ? metric[1] : '', prefix, from: caret - prefix.length };
    }
    return null;
  }
  if (inStr) return null;
  if (paren.length) {
    const open = paren[paren.length - 1];
    if (/\b(by|without|on|ignoring|group_left|group_right)\s*$/.test(before.slice(0, open))) {
      const m = /([A-Za-z_][A-Za-z0-9_]*)?$/.exec(before.slice(open + 1));
      const prefix = m[1] || '';
      const from = caret - prefix.length;
      if (/^[\sA-Za-z0-9_,]*$/.test(before.slice(open + 1))) return { kind: 'label', metric: metricIn(text.slice(0, from) + text.slice(caret)), prefix, from };
    }
  }
  let s = caret;
  while (s > 0 && IDENT.test(before[s - 1])) s--;
  const prefix = before.slice(s);
  if (!prefix || /^[0-9]/.test(prefix)) return null;
  // In a range or offset duration: `[5m`, `offset 1h`.
  if (/\[\s*[0-9a-z:]*$/.test(before)) return null;
  return { kind: 'name', prefix, from: s };
}

/** The first metric name of a query (for label completion in `by (...)`), or ''. */
function metricIn(text) {
  const stripped = text.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\{[^}]*\}/g, '{}');
  const words = stripped.match(/[A-Za-z_:][A-Za-z0-9_:]*(?=\s*(\{|\[|\)|$|\s))/g) || [];
  const skip = new Set([...FUNCTIONS, ...AGGREGATIONS, ...KEYWORDS]);
  return words.find((w) => !skip.has(w)) || '';
}

/** Quotes a label value for PromQL (double quotes, backslash escapes). */
export function quoteLabelValue(v, quote = '"') {
  return quote + String(v).replace(/\\/g, '\\\\').replace(new RegExp(quote, 'g'), `\\${quote}`).replace(/\n/g, '\\n') + quote;
}

/** `name{a="b", c="d"}` as Prometheus prints a series. */
export function seriesName(metric) {
  const name = metric.__name__ || '';
  const rest = Object.keys(metric)
    .filter((k) => k !== '__name__')
    .sort()
    .map((k) => `${k}=${quoteLabelValue(metric[k])}`);
  return rest.length || !name ? `${name}{${rest.join(', ')}}` : name;
}

/**
 * Suggestions for a context (see completionContext); `source` answers
 * `metricNames()`, `labelNames(metric)` and `labelValues(label, metric)` with promises of
 * string lists. Returns `[{ label, insert, kind }]`, at most `max`.
 */
export async function suggest(ctx, source, max = 12) {
  if (!ctx) return [];
  const starts = (x) => x.toLowerCase().startsWith(ctx.prefix.toLowerCase()) && x !== ctx.prefix;
  if (ctx.kind === 'label') {
    const names = (await source.labelNames(ctx.metric)).filter((n) => n !== '__name__');
    return names.filter(starts).slice(0, max).map((n) => ({ label: n, insert: n, kind: 'label' }));
  }
  if (ctx.kind === 'value') {
    const values = await source.labelValues(ctx.label, ctx.metric);
    return values
      .filter((v) => v.toLowerCase().startsWith(ctx.prefix.toLowerCase()))
      .slice(0, max)
      .map((v) => ({ label: v, insert: quoteLabelValue(v, ctx.quote), kind: 'value' }));
  }
  const out = [];
  for (const a of AGGREGATIONS) if (starts(a)) out.push({ label: a, insert: a, kind: 'aggregation' });
  for (const f of FUNCTIONS) if (starts(f)) out.push({ label: f, insert: `${f}(`, kind: 'function' });
  const metrics = (await source.metricNames()).filter(starts);
  const kws = KEYWORDS.filter(starts).map((k) => ({ label: k, insert: k, kind: 'keyword' }));
  // Metric names first when the prefix looks like one (has `_` or `:`), functions first otherwise.
  const ms = metrics.map((m) => ({ label: m, insert: m, kind: 'metric' }));
  const all = /[_:]/.test(ctx.prefix) ? [...ms, ...out, ...kws] : [...out, ...kws, ...ms];
  return all.slice(0, max);
}
