// A deterministic layered layout for directed graphs (the service map), left to right.
//
//   const layout = graphLayout();                    // keeps state between refreshes
//   const { nodes, edges, width, height } = layout.run(nodeIds, [{ from, to }, ...]);
//   // nodes: Map id -> { x, y, layer, order }; edges: [{ from, to, back }]
//
// Steps: cycles are broken by reversing the edges a depth-first search finds going back
// (visiting ids in sorted order, so the same graph always breaks the same way); layers by
// longest path from the sources; the order inside a layer by barycentre sweeps (down and
// up, four rounds), ties broken by the previous order and then by id. Stability: the same
// nodes and edges give the same layout; a node seen before keeps its layer unless an edge
// forces it further right, and starts the ordering from its previous place, so a refresh
// that adds one service moves little. Nodes with no edges line up in a last column.

export const COL_W = 320;
export const ROW_H = 90;
export const NODE_W = 168;
export const NODE_H = 48;
const PAD = 24;

export function graphLayout() {
  let prev = new Map(); // id -> { layer, order }
  let lastKey = '';
  let last = null;

  function run(ids, links) {
    const idList = [...new Set(ids)].sort();
    const known = new Set(idList);
    const edgeList = links.filter((e) => known.has(e.from) && known.has(e.to) && e.from !== e.to);
    const key = `${idList.join('\u0001')}\u0002${edgeList.map((e) => `${e.from}>${e.to}`).sort().join('\u0001')}`;
    if (key === lastKey && last) return last;

    // Adjacency in sorted order.
    const out = new Map(idList.map((id) => [id, []]));
    for (const e of edgeList) out.get(e.from).push(e.to);
    for (const l of out.values()) l.sort();

    // Back edges by DFS.
    const state = new Map();
    const back = new Set();
    const visit = (start) => {
      const stack = [[start, 0]];
      state.set(start, 1);
      while (stack.length) {
        const top = stack[stack.length - 1];
        const [n, i] = top;
        const next = out.get(n)[i];
        if (next === undefined) {
          state.set(n, 2);
          stack.pop();
          continue;
        }
        top[1] = i + 1;
        const s = state.get(next);
        if (s === 1) back.add(`${n}>${next}`);
        else if (!s) {
          state.set(next, 1);
          stack.push([next, 0]);
        }
      }
    };
    const indeg = new Map(idList.map((id) => [id, 0]));
    for (const e of edgeList) indeg.set(e.to, indeg.get(e.to) + 1);
    for (const id of idList) if (indeg.get(id) === 0 && !state.get(id)) visit(id);
    for (const id of idList) if (!state.get(id)) visit(id);

    const dag = edgeList.map((e) => (back.has(`${e.from}>${e.to}`) ? { from: e.to, to: e.from } : { from: e.from, to: e.to }));
    const preds = new Map(idList.map((id) => [id, []]));
    const succs = new Map(idList.map((id) => [id, []]));
    for (const e of dag) {
      preds.get(e.to).push(e.from);
      succs.get(e.from).push(e.to);
    }

    // Longest-path layering (topological order by Kahn, ids sorted).
    const layer = new Map();
    const remaining = new Map(idList.map((id) => [id, preds.get(id).length]));
    let ready = idList.filter((id) => remaining.get(id) === 0);
    while (ready.length) {
      const nextReady = [];
      for (const n of ready) {
        const base = Math.max(0, ...preds.get(n).map((p) => layer.get(p) + 1));
        // A known node keeps its column when nothing pushes it further right.
        const was = prev.get(n);
        layer.set(n, was && preds.get(n).length && was.layer > base ? Math.min(was.layer, base + 1) : base);
        for (const s of succs.get(n)) {
          remaining.set(s, remaining.get(s) - 1);
          if (remaining.get(s) === 0) nextReady.push(s);
        }
      }
      ready = nextReady.sort();
    }
    const connected = new Set(dag.flatMap((e) => [e.from, e.to]));
    const maxLayer = Math.max(0, ...[...layer.entries()].filter(([id]) => connected.has(id)).map(([, l]) => l));
    const isolatedLayer = connected.size ? maxLayer + 1 : 0;
    for (const id of idList) if (!connected.has(id)) layer.set(id, isolatedLayer);

    // Initial order: previous order, then id.
    const layers = [];
    for (const id of idList) {
      const l = layer.get(id);
      (layers[l] ||= []).push(id);
    }
    for (let i = 0; i < layers.length; i++) layers[i] ||= [];
    const prevOrder = (id) => (prev.has(id) ? prev.get(id).order : Infinity);
    for (const l of layers) l.sort((a, b) => prevOrder(a) - prevOrder(b) || (a < b ? -1 : a > b ? 1 : 0));
    const pos = new Map();
    const index = () => layers.forEach((l) => l.forEach((id, i) => pos.set(id, i)));
    index();
    const sweep = (l, neighbours) => {
      const bary = new Map();
      for (const id of l) {
        const ns = neighbours.get(id).filter((n) => layer.get(n) !== layer.get(id));
        bary.set(id, ns.length ? ns.reduce((s, n) => s + pos.get(n), 0) / ns.length : pos.get(id));
      }
      l.sort((a, b) => bary.get(a) - bary.get(b) || prevOrder(a) - prevOrder(b) || (a < b ? -1 : a > b ? 1 : 0));
      l.forEach((id, i) => pos.set(id, i));
    };
    for (let round = 0; round < 4; round++) {
      for (let i = 1; i < layers.length; i++) sweep(layers[i], preds);
      for (let i = layers.length - 2; i >= 0; i--) sweep(layers[i], succs);
    }

    const tallest = Math.max(1, ...layers.map((l) => l.length));
    const nodes = new Map();
    layers.forEach((l, li) => {
      const offset = ((tallest - l.length) * ROW_H) / 2;
      l.forEach((id, i) => nodes.set(id, { x: PAD + li * COL_W, y: PAD + offset + i * ROW_H, layer: li, order: i }));
    });
    prev = new Map([...nodes.entries()].map(([id, n]) => [id, { layer: n.layer, order: n.order }]));
    lastKey = key;
    last = {
      nodes,
      edges: edgeList.map((e) => ({ from: e.from, to: e.to, back: nodes.get(e.to).layer <= nodes.get(e.from).layer })),
      width: PAD * 2 + Math.max(0, layers.length - 1) * COL_W + NODE_W,
      height: PAD * 2 + (tallest - 1) * ROW_H + NODE_H,
    };
    return last;
  }

  return { run };
}

/** The SVG path of an edge between two laid-out nodes; `back` edges arc below. */
export function edgePath(a, b, back, lane = 0) {
  if (!back) {
    const x1 = a.x + NODE_W;
    const y1 = a.y + NODE_H / 2 + lane;
    const x2 = b.x;
    const y2 = b.y + NODE_H / 2 + lane;
    const dx = Math.max(40, (x2 - x1) / 2);
    return { d: `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`, mx: (x1 + x2) / 2, my: (y1 + y2) / 2 };
  }
  // Right to left (or within a column): leave from the bottom, come back under.
  const x1 = a.x + NODE_W / 2 + 12;
  const y1 = a.y + NODE_H;
  const x2 = b.x + NODE_W / 2 - 12;
  const y2 = b.y + NODE_H;
  const dip = Math.max(y1, y2) + 36 + Math.abs(x1 - x2) / 8;
  return { d: `M${x1},${y1} C${x1},${dip} ${x2},${dip} ${x2},${y2}`, mx: (x1 + x2) / 2, my: dip - 8 };
}
