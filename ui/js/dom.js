// Small DOM helpers. Everything the console shows is built with these (text goes in as
// text nodes, never as HTML), so values from the APIs cannot inject markup.

import { clockParts, timeZone } from './prefs.js';

/**
 * Creates an element. `attrs` keys: `class`, `dataset` (object), `on<event>` (listener),
 * boolean properties (`disabled`, `checked`, `hidden`, ...), `value`, anything else becomes
 * an attribute. Children may be nodes, strings, numbers, arrays, or null/false (skipped).
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'value' || k === 'checked' || k === 'disabled' || k === 'hidden' || k === 'selected') el[k] = v;
      else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function setChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/**
 * Keyed update of a container's rows: rows whose signature did not change are kept as they
 * are (focus, hover and selection survive), changed ones are rebuilt, gone ones removed,
 * and the order follows `items`.
 */
export function reconcile(container, items, key, signature, render) {
  const existing = new Map();
  for (const child of Array.from(container.children)) {
    if (child.dataset.key !== undefined) existing.set(child.dataset.key, child);
    else child.remove();
  }
  let prev = null;
  for (const item of items) {
    const k = String(key(item));
    const sig = signature(item);
    let row = existing.get(k);
    if (row && row._sig === sig) {
      existing.delete(k);
    } else {
      const fresh = render(item);
      fresh.dataset.key = k;
      fresh._sig = sig;
      if (row) {
        row.replaceWith(fresh);
        existing.delete(k);
        fresh.classList.add('flash');
      }
      row = fresh;
    }
    const want = prev ? prev.nextSibling : container.firstChild;
    if (want !== row) container.insertBefore(row, want);
    prev = row;
  }
  for (const row of existing.values()) row.remove();
}

/** "3 s ago", "5 min ago", ..., with the absolute time for a title attribute. */
export function ago(ms) {
  if (!ms) return '';
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const hr = Math.round(m / 60);
  if (hr < 48) return `${hr} h ago`;
  return `${Math.round(hr / 24)} d ago`;
}

/** "2026-01-02 13:04:05" in the chosen time zone (prefs.js). */
export function fullTime(ms) {
  if (!ms) return '';
  const d = clockParts(ms);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.year}-${p(d.month)}-${p(d.day)} ${p(d.hours)}:${p(d.minutes)}:${p(d.seconds)}${timeZone() === 'utc' ? ' UTC' : ''}`;
}

/** A time cell: relative text, absolute time on hover. */
export function timeEl(ms) {
  return h('time', { datetime: ms ? new Date(ms).toISOString() : '', title: fullTime(ms) }, ago(ms));
}

/** "250ms", "10s", "2m", "1h30m". */
export function duration(ms) {
  if (ms === null || ms === undefined) return '';
  if (ms < 1000) return `${ms}ms`;
  if (ms % 1000 === 0) {
    let s = ms / 1000;
    if (s < 60) return `${s}s`;
    if (s % 60 === 0 && s < 3600) return `${s / 60}m`;
    if (s % 3600 === 0) return `${s / 3600}h`;
    const hrs = Math.floor(s / 3600);
    s -= hrs * 3600;
    const m = Math.floor(s / 60);
    s -= m * 60;
    return `${hrs ? hrs + 'h' : ''}${m ? m + 'm' : ''}${s ? s + 's' : ''}`;
  }
  return `${(ms / 1000).toFixed(1)}s`;
}

export function plural(n, one, many = one + 's') {
  return `${n} ${n === 1 ? one : many}`;
}

/** A health badge: passing / warning / critical. */
export function statusBadge(status, testid) {
  return h('span', { class: `badge status-${status}`, 'data-testid': testid, 'data-status': status }, status);
}

/** An empty-state block. */
export function empty(title, ...detail) {
  return h('div', { class: 'empty' }, h('div', { class: 'empty-title' }, title), detail.length ? h('div', { class: 'empty-detail' }, ...detail) : null);
}

/** A notice line: kind is info, success, warning or error. */
export function notice(kind, ...content) {
  return h('div', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, ...content);
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An SVG element; attributes as h() takes them (on<event> listeners, the rest attributes). */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
