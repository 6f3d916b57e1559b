// A bar histogram over time (SVG) where dragging across the bars selects a time range.
//
//   const hist = histogram({ onSelect: (startMs, endMs) => ..., label: 'Matches over time' });
//   panel.append(hist.el);
//   hist.paint({ startMs, stepMs, counts });   // bucket i covers [startMs + i*stepMs, +stepMs)
//   hist.add([ms, ...]);                       // live lines, counted into their buckets
//
// A click without a drag selects the one bucket under the pointer. Escape cancels a drag.

import { h, plural, svg } from '../dom.js';
import { timeTicks, clockLabel, fullTimeMs } from '../trace-model.js';

const H = 120;
const M = { l: 44, r: 10, t: 8, b: 22 };
const MIN_DRAG_PX = 4;

export function histogram({ onSelect, label = 'Matches over time', testid = 'histogram' } = {}) {
  const el = h('div', { class: 'hist', 'data-testid': testid });
  let data = null; // { startMs, stepMs, counts }
  let geo = null; // { W, iw, x0, x1 }
  let drag = null; // { fromX, rect }
  let resizeObs = null;

  const X = (ms) => M.l + ((ms - geo.x0) / (geo.x1 - geo.x0)) * geo.iw;
  const msAt = (px) => geo.x0 + ((px - M.l) / geo.iw) * (geo.x1 - geo.x0);

  function paint(next) {
    if (next) data = next;
    if (!data) return;
    const { startMs, stepMs, counts } = data;
    const W = Math.max(320, el.clientWidth || 800);
    const iw = W - M.l - M.r;
    const ih = H - M.t - M.b;
    geo = { W, iw, x0: startMs, x1: startMs + stepMs * Math.max(1, counts.length) };
    const max = Math.max(1, ...counts);
    const yMax = niceCeil(max);
    const Y = (v) => M.t + ih - (v / yMax) * ih;
    const parts = [];
    for (const v of [0, yMax / 2, yMax]) {
      if (v !== Math.round(v)) continue;
      parts.push(svg('line', { x1: M.l, x2: W - M.r, y1: Y(v), y2: Y(v), class: 'hist-grid' }));
      parts.push(svg('text', { x: M.l - 6, y: Y(v) + 4, class: 'hist-label', 'text-anchor': 'end' }, compact(v)));
    }
    const bw = iw / Math.max(1, counts.length);
    counts.forEach((c, i) => {
      if (!c) return;
      const b0 = startMs + i * stepMs;
      const x = M.l + i * bw;
      const y = Y(c);
      parts.push(
        svg(
          'rect',
          { x: (x + Math.min(1, bw * 0.15)).toFixed(1), y: y.toFixed(1), width: Math.max(1, bw - Math.min(2, bw * 0.3)).toFixed(1), height: Math.max(1, M.t + ih - y).toFixed(1), class: 'hist-bar', 'data-testid': 'histogram-bar', 'data-count': c },
          svg('title', null, `${plural(c, 'line')} · ${fullTimeMs(b0)} – ${fullTimeMs(b0 + stepMs)}`),
        ),
      );
    });
    const tt = timeTicks(geo.x0, geo.x1, Math.max(2, Math.floor(iw / 110)));
    for (const v of tt.ticks) {
      const x = X(v);
      const anchor = x > W - M.r - 24 ? 'end' : x < M.l + 24 ? 'start' : 'middle';
      parts.push(svg('line', { x1: x, x2: x, y1: M.t + ih, y2: M.t + ih + 4, class: 'hist-tick' }));
      parts.push(svg('text', { x, y: H - 6, class: 'hist-label', 'text-anchor': anchor }, clockLabel(v, tt.step)));
    }
    parts.push(svg('line', { x1: M.l, x2: W - M.r, y1: M.t + ih, y2: M.t + ih, class: 'hist-axis' }));
    const sel = svg('rect', { x: 0, y: M.t, width: 0, height: ih, class: 'hist-sel', visibility: 'hidden' });
    parts.push(sel);
    // One transparent overlay takes the pointer, so dragging over gaps and bars is the same.
    const overlay = svg('rect', { x: M.l, y: M.t, width: iw, height: ih, class: 'hist-overlay', 'data-testid': 'histogram-drag' });
    parts.push(overlay);
    const total = counts.reduce((a, b) => a + b, 0);
    const root = svg('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'hist-svg', role: 'img', 'aria-label': `${label}: ${plural(total, 'line')}` }, parts);
    overlay.addEventListener('pointerdown', (ev) => startDrag(ev, root, sel, overlay));
    el.replaceChildren(root);
  }

  function localX(root, ev) {
    const r = root.getBoundingClientRect();
    return Math.min(M.l + geo.iw, Math.max(M.l, ev.clientX - r.left));
  }

  function startDrag(ev, root, sel, overlay) {
    if (ev.button !== 0 || !geo) return;
    ev.preventDefault();
    overlay.setPointerCapture?.(ev.pointerId);
    drag = { fromX: localX(root, ev), toX: null };
    const move = (e) => {
      drag.toX = localX(root, e);
      const a = Math.min(drag.fromX, drag.toX);
      const b = Math.max(drag.fromX, drag.toX);
      sel.setAttribute('x', a.toFixed(1));
      sel.setAttribute('width', (b - a).toFixed(1));
      sel.setAttribute('visibility', 'visible');
    };
    const done = (e, cancel) => {
      overlay.removeEventListener('pointermove', move);
      overlay.removeEventListener('pointerup', up);
      overlay.removeEventListener('pointercancel', cancelUp);
      window.removeEventListener('keydown', esc);
      sel.setAttribute('visibility', 'hidden');
      const d = drag;
      drag = null;
      if (cancel || !onSelect) return;
      const toX = e ? localX(root, e) : d.fromX;
      let a = msAt(Math.min(d.fromX, toX));
      let b = msAt(Math.max(d.fromX, toX));
      if (Math.abs(toX - d.fromX) < MIN_DRAG_PX) {
        // A click: the bucket under the pointer.
        const i = Math.floor((a - data.startMs) / data.stepMs);
        a = data.startMs + i * data.stepMs;
        b = a + data.stepMs;
      }
      onSelect(Math.floor(a), Math.ceil(b));
    };
    const up = (e) => done(e, false);
    const cancelUp = () => done(null, true);
    const esc = (e) => e.key === 'Escape' && done(null, true);
    overlay.addEventListener('pointermove', move);
    overlay.addEventListener('pointerup', up);
    overlay.addEventListener('pointercancel', cancelUp);
    window.addEventListener('keydown', esc);
  }

  if (typeof ResizeObserver === 'function') {
    let lastW = 0;
    resizeObs = new ResizeObserver(() => {
      const w = el.clientWidth;
      if (data && Math.abs(w - lastW) > 8 && !drag) paint();
      lastW = w;
    });
    resizeObs.observe(el);
  }

  return {
    el,
    paint,
    /** Counts lines at these times (Unix ms) into their buckets; returns how many fit. */
    add(times) {
      if (!data) return 0;
      let hit = 0;
      for (const ms of times) {
        const i = Math.floor((ms - data.startMs) / data.stepMs);
        if (i >= 0 && i < data.counts.length) {
          data.counts[i]++;
          hit++;
        }
      }
      if (hit && !drag) paint();
      return hit;
    },
    clear() {
      data = null;
      el.replaceChildren();
    },
    destroy() {
      if (resizeObs) resizeObs.disconnect();
    },
  };
}

/** 1, 2, 5 × 10^n at or above `v`. */
function niceCeil(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function compact(v) {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return String(v);
}
