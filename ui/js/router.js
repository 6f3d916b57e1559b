// Client-side routing on the History API. Same-origin links are followed without a page
// load; the server answers unknown console paths with index.html, so URLs are deep links.

let handler = () => {};

/** Starts routing: `onRoute(url)` runs now and on every navigation. */
export function startRouter(onRoute) {
  handler = onRoute;
  window.addEventListener('popstate', () => handler(currentUrl()));
  document.addEventListener('click', (ev) => {
    if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    const a = ev.target.closest('a[href]');
    if (!a || a.target || a.hasAttribute('download') || a.dataset.external !== undefined) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || isServerPath(url.pathname)) return;
    ev.preventDefault();
    navigate(url.pathname + url.search + url.hash);
  });
  handler(currentUrl());
}

/** Paths the server answers itself (APIs, probes): links to them load for real. */
function isServerPath(p) {
  return /^\/(api|consul|v1|prometheus)\//.test(p) || ['/metrics', '/healthz', '/readyz'].includes(p);
}

export function currentUrl() {
  return new URL(location.href);
}

/** Goes to `path` (pushes a history entry unless `replace`). */
export function navigate(path, { replace = false } = {}) {
  const before = location.pathname + location.search;
  if (replace) history.replaceState(null, '', path);
  else if (before !== path) history.pushState(null, '', path);
  handler(currentUrl());
}
