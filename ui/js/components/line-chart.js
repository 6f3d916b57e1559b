// A line chart of time series on a canvas, fast with hundreds of series: each series is
// decimated per pixel column (first, min, max and last point of the column), so a path has
// at most four points per column whatever the number of samples.
//
//   const chart = lineChart({ onSelect: (startMs, endMs) => ..., testid: 'metrics-chart' });
//   panel.append(chart.el);
//   chart.paint({ startMs, stepMs, n, series: [{ name, color, values: Float64Array(n) }] },
//               { stacked: false, hidden: new Set([seriesIndex, ...]),
//                 markers: [{ t: ms, label: 'rollout rolled back', color }] });
//
// Sample i of every series is at startMs + i * stepMs; NaN is a gap. Hovering shows the
// time and the values under the pointer; dragging across the plot selects a time range.
// After each paint `el.dataset.renderMs` holds how long it took and `el.dataset.series` how
// many series were drawn.

import { h, setChildren } from '../dom.js';
import { timeTicks, clockLabel, fullTimeMs, niceStep } from '../trace-model.js';

const H = 300;
const M = { l: 56, r: 12, t: 10, b: 24 };
const MIN_DRAG_PX = 4;
const TOOLTIP_ROWS = 10;
const PALETTE = ['#2f6fed', '#12a594', '#e8750a', '#8e44ad', '#d6336c', '#1c9bd6', '#7d9d0b', '#a0522d', '#5b5fc7', '#c89b00', '#2f9e44', '#5c6f82'];

/** The colour of series `i`: the palette first, then hues spread by the golden angle. */
export function seriesColor(i) {
  return i < PALETTE.length ? PALETTE[i] : `hsl(${Math.round((i * 137.508) % 360)}, 62%, 44%)`;
}

/** 1234567 -> "1.23M", 0.00012 -> "120µ": short axis and tooltip numbers. */
export function formatValue(v) {
  if (!Number.isFinite(v)) return Number.isNaN(v) ? 'NaN' : v > 0 ? '+Inf' : '-Inf';
  const a = Math.abs(v);
  if (a === 0) return '0';
  const units = [
    [1e12, 'T'],
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ];
  for (const [k, u] of units) if (a >= k) return `${trim(v / k)}${u}`;
  if (a >= 1) return trim(v);
  if (a >= 1e-3) return trim(v * 1e3) + 'm';
  if (a >= 1e-6) return trim(v * 1e6) + 'µ';
  return v.toExponential(2);
}

function trim(x) {
  return String(Number(x.toPrecision(3)));
}

export function lineChart({ onSelect, testid = 'line-chart' } = {}) {
  const canvas = h('canvas', { class: 'chart-canvas', 'data-testid': `${testid}-canvas` });
  const cross = h('div', { class: 'chart-cross', hidden: true });
  const selection = h('div', { class: 'chart-selection', hidden: true });
  const tooltip = h('div', { class: 'chart-tooltip', 'data-testid': `${testid}-tooltip`, role: 'status', hidden: true });
  const el = h('div', { class: 'chart', 'data-testid': testid }, canvas, cross, selection, tooltip);
  let model = null;
  let opts = { stacked: false, hidden: new Set(), markers: [] };
  let geo = null; // { W, iw, ih, x0 (ms), x1 (ms), yMin, yMax, plotted: [{ i, values }] }
  let drag = null;
  let frame = 0;
  let resizeObs = null;

  const X = (ms) => M.l + ((ms - geo.x0) / (geo.x1 - geo.x0)) * geo.iw;
  const msAt = (px) => geo.x0 + ((px - M.l) / geo.iw) * (geo.x1 - geo.x0);

  function paint(next, nextOpts) {
    if (next) model = next;
    if (nextOpts) opts = { ...opts, ...nextOpts };
    if (!model) return;
    const t0 = performance.now();
    const W = Math.max(320, el.clientWidth || 800);
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(W * dpr);
    canvas.height = Math.round(H * dpr);
    canvas.style.width = `${W}px`;
    canvas.style.height = `${H}px`;
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);

    const { startMs, stepMs, n, series } = model;
    const iw = W - M.l - M.r;
    const ih = H - M.t - M.b;
    const x1 = startMs + stepMs * Math.max(1, n - 1);

    // What is drawn: the visible series, summed up when stacked.
    const plotted = [];
    let sums = opts.stacked ? new Float64Array(n) : null;
    for (let i = 0; i < series.length; i++) {
      if (opts.hidden.has(i)) continue;
      const vals = series[i].values;
      if (!sums) {
        plotted.push({ i, values: vals });
        continue;
      }
      const out = new Float64Array(n);
      for (let k = 0; k < n; k++) {
        const v = vals[k];
        if (Number.isFinite(v)) {
          sums[k] += v;
          out[k] = sums[k];
        } else {
          out[k] = NaN;
        }
      }
      plotted.push({ i, values: out });
    }
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of plotted) {
      const vals = p.values;
      for (let k = 0; k < n; k++) {
        const v = vals[k];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    if (opts.stacked && lo > 0) lo = 0;
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
      lo = 0;
      hi = 1;
    }
    if (hi === lo) {
      const pad = Math.abs(hi) * 0.1 || 1;
      lo -= pad;
      hi += pad;
    }
    // A range too small for the values' precision (1e9 ± 1e-7) would give a step that adding
    // cannot move past, so the step is at least a millionth of the largest magnitude.
    const span = Math.max(hi - lo, Math.max(Math.abs(hi), Math.abs(lo)) * 1e-6);
    const yStep = niceStep(span, 5) || 1;
    const yMin = Math.floor(lo / yStep) * yStep;
    const yMax = Math.max(Math.ceil(hi / yStep) * yStep, yMin + yStep);
    geo = { W, iw, ih, x0: startMs, x1: x1 === startMs ? startMs + 1 : x1, yMin, yMax, plotted };
    const Y = (v) => M.t + ih - ((v - yMin) / (yMax - yMin)) * ih;

    // Grid and axes.
    ctx.font = '11px system-ui, sans-serif';
    ctx.lineWidth = 1;
    // The theme's colours (style.css variables), read at each paint.
    const css = getComputedStyle(el);
    ctx.strokeStyle = css.getPropertyValue('--chart-grid').trim() || '#eceef1';
    ctx.fillStyle = css.getPropertyValue('--muted').trim() || '#6b7280';
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    // Gridlines by index, at most a few dozen, so no float step can loop forever.
    const lines = Math.min(Math.round((yMax - yMin) / yStep), 40);
    for (let i = 0; i <= lines; i++) {
      const v = yMin + i * yStep;
      const y = Math.round(Y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(M.l, y);
      ctx.lineTo(W - M.r, y);
      ctx.stroke();
      ctx.fillText(formatValue(Math.abs(v) < yStep * 1e-9 ? 0 : v), M.l - 6, y);
    }
    const tt = timeTicks(geo.x0, geo.x1, Math.max(2, Math.floor(iw / 110)));
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (const t of tt.ticks) {
      const x = Math.round(X(t)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, M.t);
      ctx.lineTo(x, M.t + ih);
      ctx.stroke();
      ctx.fillText(clockLabel(t, tt.step), x, M.t + ih + 6);
    }

    // The series, decimated per pixel column.
    const dx = n > 1 ? iw / (n - 1) : 0;
    ctx.lineWidth = plotted.length > 50 ? 1 : 1.5;
    ctx.lineJoin = plotted.length > 50 ? 'bevel' : 'round';
    for (const p of plotted) {
      const color = series[p.i].color;
      ctx.strokeStyle = color;
      ctx.fillStyle = color;
      drawDecimated(ctx, p.values, n, M.l, dx, Y);
    }
    drawMarkers(ctx, ih);
    el.dataset.renderMs = (performance.now() - t0).toFixed(1);
    el.dataset.series = String(plotted.length);
  }

  // Event markers (rollout decisions): a dashed vertical line and a short label at the top.
  function drawMarkers(ctx, ih) {
    const shown = (opts.markers || []).filter((m) => m.t >= geo.x0 && m.t <= geo.x1);
    el.dataset.markers = String(shown.length);
    ctx.save();
    ctx.setLineDash([4, 3]);
    ctx.lineWidth = 1;
    ctx.textAlign = 'left';
    ctx.textBaseline = 'top';
    for (const m of shown) {
      const x = Math.round(X(m.t)) + 0.5;
      ctx.strokeStyle = m.color || '#8e44ad';
      ctx.fillStyle = m.color || '#8e44ad';
      ctx.beginPath();
      ctx.moveTo(x, M.t);
      ctx.lineTo(x, M.t + ih);
      ctx.stroke();
      if (m.label) ctx.fillText(m.label, Math.min(x + 3, geo.W - M.r - 80), M.t + 2);
    }
    ctx.restore();
  }

  function drawDecimated(ctx, vals, n, left, dx, Y) {
    ctx.beginPath();
    let col = -1;
    let fy = 0;
    let ly = 0;
    let mn = 0;
    let mx = 0;
    let cnt = 0;
    let pen = false;
    let segPoints = 0;
    let segX = 0;
    let segY = 0;
    const flush = () => {
      if (col < 0) return;
      if (!pen) {
        ctx.moveTo(col, fy);
        pen = true;
        segPoints = 0;
        segX = col;
        segY = fy;
      } else {
        ctx.lineTo(col, fy);
      }
      segPoints++;
      if (cnt > 1) {
        ctx.lineTo(col, mn);
        ctx.lineTo(col, mx);
        ctx.lineTo(col, ly);
        segPoints++;
      }
      col = -1;
    };
    const endSegment = () => {
      flush();
      if (pen && segPoints === 1) ctx.rect(segX - 1, segY - 1, 2, 2); // a lone sample: a dot
      pen = false;
    };
    for (let k = 0; k < n; k++) {
      const v = vals[k];
      if (!Number.isFinite(v)) {
        endSegment();
        continue;
      }
      const x = Math.round(left + k * dx);
      const y = Y(v);
      if (x !== col) {
        flush();
        col = x;
        fy = ly = mn = mx = y;
        cnt = 1;
      } else {
        ly = y;
        if (y < mn) mn = y;
        if (y > mx) mx = y;
        cnt++;
      }
    }
    endSegment();
    ctx.stroke();
  }

  // Hover -------------------------------------------------------------------------------
  function indexAt(px) {
    const { startMs, stepMs, n } = model;
    const k = Math.round((msAt(px) - startMs) / stepMs);
    return Math.max(0, Math.min(n - 1, k));
  }

  function hover(px, py) {
    if (!geo || !model || px < M.l || px > geo.W - M.r || py < M.t || py > M.t + geo.ih) {
      hideHover();
      return;
    }
    const k = indexAt(px);
    const t = model.startMs + k * model.stepMs;
    const rows = [];
    for (const p of geo.plotted) {
      const v = model.series[p.i].values[k];
      if (!Number.isNaN(v)) rows.push({ s: model.series[p.i], v });
    }
    rows.sort((a, b) => b.v - a.v);
    const x = X(t);
    cross.style.left = `${x}px`;
    cross.style.top = `${M.t}px`;
    cross.style.height = `${geo.ih}px`;
    cross.hidden = false;
    setChildren(
      tooltip,
      h('div', { class: 'chart-tip-time', 'data-testid': 'chart-tooltip-time' }, fullTimeMs(t)),
      rows.length ? null : h('div', { class: 'muted' }, 'No value'),
      rows.slice(0, TOOLTIP_ROWS).map((r) =>
        h('div', { class: 'chart-tip-row', 'data-testid': 'chart-tooltip-row' }, h('span', { class: 'swatch', style: { background: r.s.color } }), h('span', { class: 'chart-tip-name' }, r.s.name), h('span', { class: 'chart-tip-value' }, formatValue(r.v))),
      ),
      rows.length > TOOLTIP_ROWS ? h('div', { class: 'muted' }, `and ${rows.length - TOOLTIP_ROWS} more`) : null,
    );
    tooltip.hidden = false;
    const tw = tooltip.offsetWidth;
    tooltip.style.left = `${x + 14 + tw > geo.W ? Math.max(0, x - 14 - tw) : x + 14}px`;
    tooltip.style.top = `${M.t + 4}px`;
  }

  function hideHover() {
    cross.hidden = true;
    tooltip.hidden = true;
  }

  const localX = (ev) => ev.clientX - canvas.getBoundingClientRect().left;
  const localY = (ev) => ev.clientY - canvas.getBoundingClientRect().top;

  canvas.addEventListener('mousemove', (ev) => {
    const px = localX(ev);
    if (drag) {
      const a = Math.max(M.l, Math.min(drag.from, px));
      const b = Math.min(geo.W - M.r, Math.max(drag.from, px));
      selection.style.left = `${a}px`;
      selection.style.width = `${b - a}px`;
      selection.style.top = `${M.t}px`;
      selection.style.height = `${geo.ih}px`;
      selection.hidden = b - a < MIN_DRAG_PX;
    }
    if (!frame) {
      const py = localY(ev);
      frame = requestAnimationFrame(() => {
        frame = 0;
        hover(px, py);
      });
    }
  });
  canvas.addEventListener('mouseleave', () => {
    if (frame) cancelAnimationFrame(frame);
    frame = 0;
    hideHover();
  });
  canvas.addEventListener('mousedown', (ev) => {
    if (ev.button !== 0 || !geo || !onSelect) return;
    ev.preventDefault();
    drag = { from: localX(ev) };
  });
  const onUp = (ev) => {
    if (!drag) return;
    const from = drag.from;
    drag = null;
    selection.hidden = true;
    const to = localX(ev);
    if (Math.abs(to - from) < MIN_DRAG_PX) return;
    const a = Math.max(M.l, Math.min(from, to));
    const b = Math.min(geo.W - M.r, Math.max(from, to));
    onSelect(Math.round(msAt(a)), Math.round(msAt(b)));
  };
  const onKey = (ev) => {
    if (ev.key === 'Escape' && drag) {
      drag = null;
      selection.hidden = true;
    }
  };
  window.addEventListener('mouseup', onUp);
  window.addEventListener('keydown', onKey);

  if (typeof ResizeObserver === 'function') {
    let lastW = 0;
    resizeObs = new ResizeObserver(() => {
      const w = el.clientWidth;
      if (w && w !== lastW) {
        lastW = w;
        if (model) paint();
      }
    });
    resizeObs.observe(el);
  }

  return {
    el,
    paint,
    clear() {
      model = null;
      geo = null;
      hideHover();
      const ctx = canvas.getContext('2d');
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      delete el.dataset.series;
    },
    destroy() {
      if (resizeObs) resizeObs.disconnect();
      if (frame) cancelAnimationFrame(frame);
      window.removeEventListener('mouseup', onUp);
      window.removeEventListener('keydown', onKey);
    },
  };
}
