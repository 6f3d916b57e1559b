// A time range picker and its URL parameters, shared by the Logs and Metrics pages: `since=1h` (a
// relative range ending now) or `start=&end=` (Unix ms; no `end`: until now).
//
//   const r = readRange(searchParams);            // { since, start, end }
//   writeRange(searchParams, r);                  // the inverse
//   const { startMs, endMs } = rangeBounds(r);    // absolute, now resolved
//   const picker = timeRange({ onChange: (r) => ..., testid: 'metrics-range' });
//   picker.set(r);  form.append(picker.el);
//
// The picker is a select of relative ranges; a chosen absolute range shows as a chip with a
// button back to the default range.

import { h, setChildren } from '../dom.js';
import { fullTimeMs } from '../trace-model.js';

export const RANGES = [
  ['5m', 'Last 5 minutes'],
  ['15m', 'Last 15 minutes'],
  ['1h', 'Last hour'],
  ['6h', 'Last 6 hours'],
  ['24h', 'Last 24 hours'],
  ['168h', 'Last 7 days'],
];
export const DEFAULT_SINCE = '1h';

/** The range a URL holds (`p`: URLSearchParams). */
export function readRange(p) {
  const start = p.get('start') || '';
  const end = p.get('end') || '';
  return { since: start ? '' : p.get('since') || DEFAULT_SINCE, start: start && isMs(start) ? start : '', end: start && isMs(end) ? end : '' };
}

/** Writes `r` into `p` (URLSearchParams). */
export function writeRange(p, r) {
  if (r.start) {
    p.set('start', r.start);
    if (r.end) p.set('end', r.end);
  } else {
    p.set('since', r.since || DEFAULT_SINCE);
  }
  return p;
}

const isMs = (s) => /^\d{1,15}$/.test(s);

/** Milliseconds of a `since` value (`90s`, `15m`, `1h`, `7d`); the default hour when malformed. */
export function sinceMs(s) {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(s || '');
  if (!m || Number(m[1]) === 0) return 3600e3;
  return Number(m[1]) * { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[m[2]];
}

/** The absolute bounds of `r` (Unix ms), `now` resolving relative ranges. */
export function rangeBounds(r, now = Date.now()) {
  if (r.start) {
    const startMs = Number(r.start);
    const endMs = r.end ? Number(r.end) : now;
    return { startMs, endMs: Math.max(endMs, startMs + 1000) };
  }
  return { startMs: now - sinceMs(r.since), endMs: now };
}

export function timeRange({ onChange, testid = 'time-range' }) {
  let current = { since: DEFAULT_SINCE, start: '', end: '' };
  const select = h('select', { class: 'input time-range-select', 'aria-label': 'Time range', 'data-testid': testid }, RANGES.map(([v, label]) => h('option', { value: v }, label)));
  const chip = h('span', { class: 'logs-chip', 'data-testid': `${testid}-chip`, hidden: true });
  select.addEventListener('change', () => {
    if (select.value === 'custom') return;
    onChange({ since: select.value, start: '', end: '' });
  });

  function set(r) {
    current = r;
    for (const o of Array.from(select.options)) if (o.value === 'custom' || o.dataset.extra) o.remove();
    if (r.start) {
      select.append(h('option', { value: 'custom' }, 'Selected range'));
      select.value = 'custom';
      const { startMs, endMs } = rangeBounds(r);
      setChildren(
        chip,
        `${fullTimeMs(startMs)} – ${r.end ? fullTimeMs(endMs) : 'now'}`,
        h('button', { type: 'button', class: 'logs-chip-x', title: 'Back to the last hour', 'aria-label': 'Clear the selected range', 'data-testid': `${testid}-clear`, onclick: () => onChange({ since: DEFAULT_SINCE, start: '', end: '' }) }, '×'),
      );
      chip.hidden = false;
    } else {
      if (!RANGES.some(([v]) => v === r.since)) select.append(h('option', { value: r.since, dataset: { extra: '1' } }, `Last ${r.since}`));
      select.value = r.since;
      chip.hidden = true;
    }
  }

  return { el: select, chip, set, get: () => current };
}
