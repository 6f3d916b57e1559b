// The person's console preferences: the theme and the time zone (remembered in
// localStorage across visits), and the time range shared by pages (sessionStorage: this tab).
//
//   theme()  'system' | 'light' | 'dark'     setTheme(t)     (applied to <html data-theme>)
//   timeZone() 'local' | 'utc'               setTimeZone(z)
//   clockParts(ms) -> { year, month, day, hours, minutes, seconds, millis } in that zone
//   zoneOffsetMs(ms)  what to subtract from Unix ms to round on the zone's clock
//   rememberRange(r) / lastRange()            the last { since | start, end } a page showed
//   onPrefsChange(fn)                         after a theme or time-zone change
//
// Every time the console prints goes through clockParts (trace-model.js fullTimeMs,
// clockLabel, dom.js fullTime), so the choice applies to every page.

const THEME_KEY = 'signalbox.theme';
const ZONE_KEY = 'signalbox.timeZone';
const RANGE_KEY = 'signalbox.range';

const listeners = new Set();

function read(storage, key) {
  try {
    return storage.getItem(key);
  } catch {
    return null; // storage disabled: defaults
  }
}

function write(storage, key, value) {
  try {
    if (value === null) storage.removeItem(key);
    else storage.setItem(key, value);
  } catch {
    // Storage disabled or full: the choice lasts until the page reloads.
  }
}

function changed() {
  for (const fn of Array.from(listeners)) {
    try {
      fn();
    } catch (e) {
      console.error(e);
    }
  }
}

/** `fn()` after the theme or the time zone changes; returns the unsubscribe. */
export function onPrefsChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

// Theme ------------------------------------------------------------------------------------

const darkQuery = typeof matchMedia === 'function' ? matchMedia('(prefers-color-scheme: dark)') : null;

export function theme() {
  const t = read(localStorage, THEME_KEY);
  return t === 'light' || t === 'dark' ? t : 'system';
}

/** The theme in effect: the choice, or the system's preference. */
export function effectiveTheme() {
  const t = theme();
  if (t !== 'system') return t;
  return darkQuery && darkQuery.matches ? 'dark' : 'light';
}

export function applyTheme() {
  document.documentElement.dataset.theme = effectiveTheme();
}

export function setTheme(t) {
  write(localStorage, THEME_KEY, t === 'light' || t === 'dark' ? t : null);
  applyTheme();
  changed();
}

if (darkQuery && darkQuery.addEventListener) {
  darkQuery.addEventListener('change', () => {
    if (theme() === 'system') {
      applyTheme();
      changed();
    }
  });
}

// Time zone --------------------------------------------------------------------------------

export function timeZone() {
  return read(localStorage, ZONE_KEY) === 'utc' ? 'utc' : 'local';
}

export function setTimeZone(z) {
  write(localStorage, ZONE_KEY, z === 'utc' ? 'utc' : null);
  document.documentElement.dataset.timeZone = timeZone();
  changed();
}

/** The calendar and clock of Unix ms `ms` in the chosen zone. */
export function clockParts(ms) {
  const d = new Date(Number(ms));
  if (timeZone() === 'utc') {
    return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate(), hours: d.getUTCHours(), minutes: d.getUTCMinutes(), seconds: d.getUTCSeconds(), millis: d.getUTCMilliseconds() };
  }
  return { year: d.getFullYear(), month: d.getMonth() + 1, day: d.getDate(), hours: d.getHours(), minutes: d.getMinutes(), seconds: d.getSeconds(), millis: d.getMilliseconds() };
}

/** The zone's offset at `ms` as Date.getTimezoneOffset counts it (ms; UTC: 0). */
export function zoneOffsetMs(ms) {
  return timeZone() === 'utc' ? 0 : new Date(Number(ms)).getTimezoneOffset() * 60e3;
}

/** "UTC" or "local time", for labels. */
export function zoneLabel() {
  return timeZone() === 'utc' ? 'UTC' : 'local time';
}

/** The value of a datetime-local input (`2026-01-02T13:04:05`) read in the chosen zone, as Unix ms (NaN when malformed). */
export function parseClockInput(value) {
  if (!value) return NaN;
  return timeZone() === 'utc' ? Date.parse(`${value}Z`) : new Date(value).getTime();
}

/** Unix ms as a datetime-local input value in the chosen zone. */
export function clockInputValue(ms) {
  if (!ms || !Number.isFinite(Number(ms))) return '';
  const c = clockParts(ms);
  const p = (v) => String(v).padStart(2, '0');
  return `${c.year}-${p(c.month)}-${p(c.day)}T${p(c.hours)}:${p(c.minutes)}:${p(c.seconds)}`;
}

// The shared time range -------------------------------------------------------------------

/** Keeps `r` ({since} or {start, end}) as the range the next page opens with. */
export function rememberRange(r) {
  if (!r) return;
  const keep = r.start ? { start: String(r.start), end: r.end ? String(r.end) : '' } : r.since ? { since: r.since } : null;
  if (keep) write(sessionStorage, RANGE_KEY, JSON.stringify(keep));
}

/** The last range a page showed in this tab, or null. */
export function lastRange() {
  const raw = read(sessionStorage, RANGE_KEY);
  if (!raw) return null;
  try {
    const r = JSON.parse(raw);
    if (r && typeof r.since === 'string' && /^\d+(ms|s|m|h|d)$/.test(r.since)) return { since: r.since, start: '', end: '' };
    if (r && /^\d{1,15}$/.test(r.start || '')) return { since: '', start: r.start, end: /^\d{1,15}$/.test(r.end || '') ? r.end : '' };
  } catch {
    // A bad value: no remembered range.
  }
  return null;
}

/** Whether URL search params carry a range of their own. */
export function hasRange(p) {
  return p.has('since') || p.has('start') || p.has('lookback');
}
