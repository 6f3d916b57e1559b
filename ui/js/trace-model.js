// Trace data for the Traces pages, without DOM: span trees, the critical path, self time,
// time formatting, duration input parsing, axis ticks and service colours.
//
// Times come from the API as Unix nanoseconds in strings (beyond 2^53, a number would round):
// the tree works on offsets from the trace start, subtracted exactly as BigInt and small
// enough afterwards for plain numbers. Numbers are accepted too.

import { clockParts, zoneOffsetMs, timeZone } from './prefs.js';

const SMALL_UNITS = [
  [1, 'ns'],
  [1e3, 'µs'],
  [1e6, 'ms'],
  [1e9, 's'],
];

/** "0ns", "850ns", "12.3µs", "420ms", "1.25s", "2m 5s", "1h 3m". */
export function fmtDur(ns) {
  if (ns === null || ns === undefined || !Number.isFinite(ns)) return '';
  const a = Math.abs(ns);
  const sign = ns < 0 ? '-' : '';
  if (a < 59.95e9) {
    for (let u = 0; u < SMALL_UNITS.length; u++) {
      const v = a / SMALL_UNITS[u][0];
      const text = String(Number(v.toFixed(u === 0 ? 0 : v < 10 ? 2 : v < 100 ? 1 : 0)));
      // 999.996µs rounds to "1000": say 1ms instead.
      if (Number(text) < 1000 || u === SMALL_UNITS.length - 1) return `${sign}${text}${SMALL_UNITS[u][1]}`;
    }
  }
  const totalS = Math.round(a / 1e9);
  if (totalS < 3600) return `${sign}${Math.floor(totalS / 60)}m${totalS % 60 ? ` ${totalS % 60}s` : ''}`;
  const m = Math.round(totalS / 60);
  return `${sign}${Math.floor(m / 60)}h${m % 60 ? ` ${m % 60}m` : ''}`;
}

/** An offset from the trace start: "+12.3ms" ("0" for the start itself). */
export function fmtOffset(ns) {
  return ns <= 0 ? '0ms' : `+${fmtDur(ns)}`;
}

const UNIT_NS = { ns: 1, us: 1e3, 'µs': 1e3, 'μs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9, d: 86400e9 };

/**
 * A duration as typed in the search form ("120ms", "1.5s", "1m30s", "250us"), in ns;
 * null when it is not one. The node accepts the same forms.
 */
export function parseDuration(text) {
  const s = String(text).trim();
  if (!s) return null;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)/y;
  let total = 0;
  let i = 0;
  while (i < s.length) {
    re.lastIndex = i;
    const m = re.exec(s);
    if (!m) return null;
    total += Number(m[1]) * UNIT_NS[m[2]];
    i = re.lastIndex;
  }
  return Number.isFinite(total) ? total : null;
}

/**
 * `key=value` pairs separated by spaces or new lines; a value with spaces is quoted
 * (`k="a b"`). Returns {tags: [[k, v]]} or {error}.
 */
export function parseTags(text) {
  const tags = [];
  const re = /\s*([^\s=]+)=("((?:[^"\\]|\\.)*)"|\S*)/y;
  const s = String(text).trim();
  let i = 0;
  while (i < s.length) {
    re.lastIndex = i;
    const m = re.exec(s);
    if (!m) {
      const bad = s.slice(i).trim().split(/\s+/)[0];
      return { error: `“${bad}” is not key=value` };
    }
    tags.push([m[1], m[3] !== undefined ? m[3].replace(/\\(.)/g, '$1') : m[2]]);
    i = re.lastIndex;
    while (i < s.length && /\s/.test(s[i])) i++;
  }
  return { tags };
}

/** The tags back as text for the form. */
export function formatTags(tags) {
  return tags.map(([k, v]) => (/[\s"]/.test(v) || v === '' ? `${k}="${v.replace(/["\\]/g, '\\$&')}"` : `${k}=${v}`)).join(' ');
}

// Colours --------------------------------------------------------------------------------

// Red is kept for errors.
const PALETTE = ['#2f6fed', '#12a594', '#e8750a', '#8e44ad', '#d6336c', '#1c9bd6', '#7d9d0b', '#a0522d', '#5b5fc7', '#c89b00', '#2f9e44', '#5c6f82'];
const colorOf = new Map(); // service -> palette index, for this page load
const taken = new Set();

/**
 * A colour per service: the palette slot its name hashes to, or the next free one when a
 * service seen earlier holds that slot, so services on screen together rarely share one.
 * The same service keeps its colour on every page until the console reloads.
 */
export function serviceColor(name) {
  let i = colorOf.get(name);
  if (i === undefined) {
    let x = 2166136261;
    for (let k = 0; k < name.length; k++) {
      x ^= name.charCodeAt(k);
      x = Math.imul(x, 16777619);
    }
    const home = (x >>> 0) % PALETTE.length;
    i = home;
    for (let k = 0; k < PALETTE.length; k++) {
      const j = (home + k) % PALETTE.length;
      if (!taken.has(j)) {
        i = j;
        break;
      }
    }
    taken.add(i);
    colorOf.set(name, i);
  }
  return PALETTE[i];
}

/** Assigns colours to `names` in name order (the same on every load for the same set). */
export function primeColors(names) {
  for (const n of [...names].sort()) serviceColor(n);
}

// Axis ticks -----------------------------------------------------------------------------

/** A "nice" step (1, 2 or 5 times a power of ten) so that `span` gets about `n` ticks. */
export function niceStep(span, n) {
  if (!(span > 0)) return 1;
  const raw = span / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

/** Tick values from 0 to `max` inclusive of 0 (about `n` of them). */
export function ticks(max, n = 5) {
  if (!Number.isFinite(max) || max <= 0) return [0];
  const step = niceStep(max, n);
  const out = [];
  for (let i = 0; i * step <= max * (1 + 1e-9) && i <= 4 * n; i++) out.push(i * step);
  return out;
}

const TIME_STEPS_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 10e3, 15e3, 30e3, 60e3, 120e3, 300e3, 600e3, 900e3, 1800e3, 3600e3, 7200e3, 10800e3, 21600e3, 43200e3, 86400e3];

/** Wall-clock ticks (ms) between `from` and `to`, about `n` of them, on round times. */
export function timeTicks(from, to, n = 6) {
  const span = to - from;
  const step = TIME_STEPS_MS.find((s) => span / s <= n) || 86400e3 * Math.ceil(span / n / 86400e3);
  // Round on the chosen zone's clock so that minutes and hours line up with it.
  const tz = zoneOffsetMs(from);
  const out = [];
  const first = Math.ceil((from - tz) / step) * step + tz;
  for (let i = 0; first + i * step <= to && i <= 4 * n; i++) out.push(first + i * step);
  return { ticks: out, step };
}

/** A clock label for a tick: with seconds / milliseconds when the step needs them. */
export function clockLabel(ms, step) {
  const d = clockParts(ms);
  const p = (v, n = 2) => String(v).padStart(n, '0');
  const hm = `${p(d.hours)}:${p(d.minutes)}`;
  if (step >= 86400e3) return `${d.month}/${d.day}`;
  if (step >= 60e3) return hm;
  if (step >= 1000) return `${hm}:${p(d.seconds)}`;
  return `${p(d.minutes)}:${p(d.seconds)}.${p(d.millis, 3)}`;
}

/** "2026-01-02 13:04:05.123" in the chosen time zone (prefs.js; " UTC" appended for UTC). */
export function fullTimeMs(ms) {
  const d = clockParts(ms);
  const p = (v, n = 2) => String(v).padStart(n, '0');
  return `${d.year}-${p(d.month)}-${p(d.day)} ${p(d.hours)}:${p(d.minutes)}:${p(d.seconds)}.${p(d.millis, 3)}${timeZone() === 'utc' ? ' UTC' : ''}`;
}

/** "13:04:05.123" in the chosen time zone. */
export function clockTimeMs(ms) {
  const d = clockParts(ms);
  const p = (v, n = 2) => String(v).padStart(n, '0');
  return `${p(d.hours)}:${p(d.minutes)}:${p(d.seconds)}.${p(d.millis, 3)}`;
}

// The span tree --------------------------------------------------------------------------

/**
 * Builds the tree of a trace's spans (as GET /api/traces/{id} returns them).
 *
 * Returns `{ nodes, root, startMs, offset, end, duration, depth, services, errors }`
 * (`offset(unixNanos)` gives ns from the trace start) where `nodes` is
 * every span in tree order (depth first, children by start time), each node being
 * `{ span, index, depth, parent, children, start, end, last, orphan }`: `start`/`end` are ns
 * from the trace start and `last` is the index of the node's last descendant (itself when it
 * has none), so a subtree is `nodes[index..=last]`. `root` is the earliest span without a
 * parent; spans whose parent is not in the trace become roots of their own (`orphan`).
 */
export function buildTree(spans) {
  const big = (v) => BigInt(typeof v === 'number' ? Math.round(v) : v);
  const starts = spans.map((s) => big(s.start_unix_nanos));
  const t0 = starts.reduce((m, v) => (v < m ? v : m), starts[0] ?? 0n);
  /** Unix ns (string or number) -> ns from the trace start. */
  const offset = (v) => Number(big(v) - t0);
  // Zipkin's shared spans: the client half and the server half (`shared`) have one id. The
  // server half hangs under the client half, and children of that id under the server half.
  const byId = new Map();
  const unshared = new Map();
  const all = spans.map((s, i) => {
    const start = Number(starts[i] - t0);
    const end = s.end_unix_nanos !== undefined ? offset(s.end_unix_nanos) : start + Number(s.duration_nanos || 0);
    const n = { span: s, index: -1, depth: 0, parent: null, children: [], start, end: Math.max(start, end), last: -1, orphan: false };
    if (s.shared || !byId.has(s.span_id)) byId.set(s.span_id, n);
    if (!s.shared) unshared.set(s.span_id, n);
    return n;
  });
  const roots = [];
  for (const n of all) {
    let p = n.span.parent_span_id ? byId.get(n.span.parent_span_id) : null;
    if (n.span.shared && unshared.has(n.span.span_id)) p = unshared.get(n.span.span_id);
    if (p && p !== n) {
      n.parent = p;
      p.children.push(n);
    } else {
      n.orphan = !!n.span.parent_span_id;
      roots.push(n);
    }
  }
  const byStart = (a, b) => a.start - b.start || (a.span.span_id < b.span.span_id ? -1 : 1);
  for (const n of all) if (n.children.length > 1) n.children.sort(byStart);
  // The real root first, then orphans by start.
  roots.sort((a, b) => a.orphan - b.orphan || byStart(a, b));

  const nodes = [];
  const place = (top) => {
    // Iterative depth-first walk: traces can be deep.
    const stack = [[top, 0]];
    const open = [];
    while (stack.length) {
      const [n, depth] = stack.pop();
      if (n.index !== -1) continue; // a parent cycle: each span once
      while (open.length && open[open.length - 1].depth >= depth) open.pop().last = nodes.length - 1;
      n.index = nodes.length;
      n.depth = depth;
      nodes.push(n);
      open.push(n);
      for (let i = n.children.length - 1; i >= 0; i--) stack.push([n.children[i], depth + 1]);
    }
    while (open.length) open.pop().last = nodes.length - 1;
  };
  for (const r of roots) place(r);
  // Spans in a parent cycle are reachable from no root: show them anyway, at the top level.
  for (const n of all) {
    if (n.index === -1) {
      n.orphan = true;
      n.parent = null;
      place(n);
    }
  }
  // A cycle can leave a child list pointing at a node placed elsewhere; keep only real ones.
  for (const n of nodes) n.children = n.children.filter((c) => c.parent === n && c.index > n.index && c.index <= n.last);

  let end = 0;
  let depth = 0;
  let errors = 0;
  const services = new Map();
  for (const n of nodes) {
    end = Math.max(end, n.end);
    depth = Math.max(depth, n.depth + 1);
    if (n.span.status === 'error') errors++;
    services.set(n.span.service, (services.get(n.span.service) || 0) + 1);
  }
  return {
    nodes,
    root: nodes[0] || null,
    /** The trace start in Unix ms (for clock times). */
    startMs: Number(t0 / 1000n) / 1000,
    offset,
    start: 0,
    end,
    duration: end,
    depth,
    errors,
    services: Array.from(services, ([name, count]) => ({ name, count })).sort((a, b) => b.count - a.count || a.name.localeCompare(b.name)),
  };
}

/**
 * The critical path from `root`: the chain of work that the trace's end waited on. Walking
 * back from the root's end, the child that finished last (before the point reached so far)
 * blocked its parent: its span is followed the same way, then the walk continues in the
 * parent from that child's start. Time not covered by such a child is the parent's own.
 * Children are clipped to their parent's time (clock skew), as Jaeger's critical path does.
 *
 * Returns a Map node -> [[start, end], ...] (ns from the trace start), segments latest first.
 */
export function criticalPath(root) {
  const out = new Map();
  if (!root) return out;
  const add = (n, s, e) => {
    if (e <= s) return;
    let list = out.get(n);
    if (!list) out.set(n, (list = []));
    list.push([s, e]);
  };
  // Explicit stack of frames so a deep trace cannot overflow the call stack.
  const frame = (n, from, to) => {
    const kids = [];
    for (const c of n.children) {
      const s = Math.max(c.start, from);
      const e = Math.min(c.end, to);
      if (s <= e && c.start <= to) kids.push({ c, s, e });
    }
    kids.sort((a, b) => b.e - a.e || b.s - a.s);
    return { n, from, cursor: to, kids, i: 0 };
  };
  const stack = [frame(root, root.start, root.end)];
  while (stack.length) {
    const f = stack[stack.length - 1];
    let next = null;
    while (f.i < f.kids.length) {
      const k = f.kids[f.i++];
      if (k.e <= f.cursor) {
        next = k;
        break;
      }
    }
    if (!next) {
      add(f.n, f.from, f.cursor);
      stack.pop();
      continue;
    }
    add(f.n, next.e, f.cursor);
    f.cursor = next.s;
    stack.push(frame(next.c, next.s, next.e));
  }
  return out;
}

/** A span's own time: its duration minus what its children cover (clipped to it). */
export function selfTime(n) {
  const iv = n.children.map((c) => [Math.max(c.start, n.start), Math.min(c.end, n.end)]).filter(([s, e]) => e > s);
  iv.sort((a, b) => a[0] - b[0]);
  let covered = 0;
  let curS = -Infinity;
  let curE = -Infinity;
  for (const [s, e] of iv) {
    if (s > curE) {
      if (curE > curS) covered += curE - curS;
      curS = s;
      curE = e;
    } else if (e > curE) {
      curE = e;
    }
  }
  if (curE > curS) covered += curE - curS;
  return Math.max(0, n.end - n.start - covered);
}

/** An attribute map's entries, sorted by key. */
export function sortedEntries(attrs) {
  const byKey = (a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
  return Object.entries(attrs || {}).sort(byKey);
}

/** The attribute by which the gateway's server span names the upstream service it called. */
export const UPSTREAM_ATTR = 'signalbox.upstream.service';

/** The services that recorded gateway spans in a tree's nodes (a span naming UPSTREAM_ATTR). */
export function gatewayServices(nodes) {
  return new Set(nodes.filter((n) => n.span.attributes && n.span.attributes[UPSTREAM_ATTR]).map((n) => n.span.service));
}

/**
 * The service-map edge a span's call crossed, `{ from, to }`, seen through the gateway as
 * the map is (docs/console-views.md): a gateway span stands for the call to the upstream it
 * names, and a span under the gateway's spans was called by whoever called the gateway.
 * A call from outside through the gateway is an edge from the gateway. Null when the span
 * crossed no edge (a root span, or a span under its own service's span).
 */
export function mapEdge(node, gateways) {
  const s = node.span;
  const upstream = s.attributes && s.attributes[UPSTREAM_ATTR];
  const to = upstream || s.service;
  if (gateways.has(s.service) && !upstream) return null; // the gateway's own inner spans
  let p = node.parent;
  let via = upstream ? s.service : '';
  while (p && gateways.has(p.span.service)) {
    via = p.span.service;
    p = p.parent;
  }
  const from = p ? p.span.service : via;
  return from && from !== to ? { from, to } : null;
}
