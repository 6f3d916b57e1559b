// Formatting shared by the overview, the service map and the service page: request rate,
// error ratio and latency as short text, and the health badge (ok, warn, fail, idle) that
// the views APIs compute with the thresholds they return.

import { h } from '../dom.js';

/** 12.3 -> "12.3/s", 0.004 -> "0.004/s"; null -> "–". */
export function fmtRate(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  if (v === 0) return '0/s';
  if (v >= 100) return `${Math.round(v)}/s`;
  if (v >= 1) return `${Number(v.toFixed(1))}/s`;
  return `${Number(v.toPrecision(2))}/s`;
}

/** 0.0312 -> "3.1%"; null -> "–". */
export function fmtPct(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  if (v === 0) return '0%';
  const p = v * 100;
  return p >= 10 ? `${Math.round(p)}%` : p >= 0.1 ? `${Number(p.toFixed(1))}%` : '<0.1%';
}

/** 1234 -> "1.23 s", 12.3 -> "12 ms"; null -> "–". */
export function fmtMs(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  if (v >= 1000) return `${Number((v / 1000).toPrecision(3))} s`;
  if (v >= 10) return `${Math.round(v)} ms`;
  return `${Number(v.toPrecision(2))} ms`;
}

const LABELS = { ok: 'healthy', warn: 'degraded', fail: 'failing', idle: 'no traffic' };

/** A health badge; `status` is ok, warn, fail or idle. */
export function healthBadge(status, testid) {
  return h('span', { class: `badge health-${status}`, 'data-testid': testid || null, 'data-status': status }, LABELS[status] || status);
}

/** ok / warn / fail of an error ratio against the API's thresholds. */
export function errorLevel(ratio, t) {
  if (ratio === null || ratio === undefined || !t) return '';
  return ratio >= t.error_fail ? 'fail' : ratio >= t.error_warn ? 'warn' : 'ok';
}

/** ok / warn / fail of a p99 against the API's thresholds. */
export function latencyLevel(ms, t) {
  if (ms === null || ms === undefined || !t) return '';
  return ms >= t.p99_fail_ms ? 'fail' : ms >= t.p99_warn_ms ? 'warn' : 'ok';
}
