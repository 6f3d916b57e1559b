// A small inline chart of one series (the overview's rate, errors and p99 columns).
//
//   sparkline([1, 2, null, 4], { kind: 'rate', testid: 'overview-spark-rate' })
//
// `null` is a gap. The line is scaled to the series' own range (zero-based), so the shape
// shows the trend and the number beside it shows the level. `kind` picks the colour class.

import { svg } from '../dom.js';

export function sparkline(values, { width = 88, height = 22, kind = 'rate', testid, title } = {}) {
  const el = svg('svg', { class: `spark spark-${kind}`, width, height, viewBox: `0 0 ${width} ${height}`, 'aria-hidden': 'true', 'data-testid': testid || null });
  const list = Array.isArray(values) ? values : [];
  const finite = list.filter((v) => Number.isFinite(v));
  if (title) el.append(svg('title', null, title));
  if (!finite.length) {
    el.append(svg('line', { x1: 0, y1: height - 1.5, x2: width, y2: height - 1.5, class: 'spark-none' }));
    el.dataset.points = '0';
    return el;
  }
  const max = Math.max(...finite, 0);
  const min = Math.min(...finite, 0);
  const span = max - min || 1;
  const X = (i) => (list.length <= 1 ? width / 2 : (i / (list.length - 1)) * (width - 2) + 1);
  const Y = (v) => height - 2 - ((v - min) / span) * (height - 4);
  let d = '';
  let area = '';
  let open = false;
  let runStart = 0;
  list.forEach((v, i) => {
    if (!Number.isFinite(v)) {
      if (open) area += `L${X(i - 1).toFixed(1)},${height} L${X(runStart).toFixed(1)},${height} Z `;
      open = false;
      return;
    }
    const p = `${X(i).toFixed(1)},${Y(v).toFixed(1)}`;
    if (!open) {
      runStart = i;
      d += `M${p} `;
      area += `M${p} `;
    } else {
      d += `L${p} `;
      area += `L${p} `;
    }
    open = true;
  });
  if (open) area += `L${X(list.length - 1).toFixed(1)},${height} L${X(runStart).toFixed(1)},${height} Z`;
  el.append(svg('path', { d: area, class: 'spark-area' }), svg('path', { d, class: 'spark-line' }));
  el.dataset.points = String(finite.length);
  return el;
}
