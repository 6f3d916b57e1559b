// Same-origin JSON calls. The browser sends the HttpOnly session cookie by itself; the
// token never lives in the page.

/** An answer other than 2xx, or no answer at all (`status` 0). */
export class ApiError extends Error {
  constructor(status, body, message) {
    super(message);
    this.status = status;
    this.body = body;
    this.code = body && typeof body === 'object' ? body.code : undefined;
    this.field = body && typeof body === 'object' ? body.field : undefined;
  }
}

let onUnauthorized = () => {};

/** Called when any call (other than the session check itself) answers 401. */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/**
 * `api('GET', '/api/config')`, `api('PUT', path, body)`. Resolves with the parsed JSON
 * (or null for an empty body); rejects with an ApiError. The native APIs send Unix
 * nanoseconds and 64-bit ids as strings, so JSON.parse loses nothing.
 */
export async function api(method, path, body, { quiet401 = false } = {}) {
  const init = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, null, `the server could not be reached (${e.message})`);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    const msg = data && typeof data === 'object' && data.error ? data.error : `${res.status} ${res.statusText}`;
    const err = new ApiError(res.status, data, msg);
    if (res.status === 401 && !quiet401) onUnauthorized(err);
    throw err;
  }
  return data;
}

/** Path segment encoding for names that may contain `/` or `:` (config keys). */
export const seg = encodeURIComponent;

export function configPath(app, profile, key) {
  return `/api/config/${seg(app)}/${seg(profile)}/${seg(key)}`;
}

// Session ------------------------------------------------------------------------------

/** `{access_control, role, token_id}`, or null when a login is needed. */
export async function whoami() {
  try {
    return await api('GET', '/api/session', undefined, { quiet401: true });
  } catch (e) {
    if (e.status === 401) return null;
    throw e;
  }
}

export function login(token) {
  return api('POST', '/api/session', { token }, { quiet401: true });
}

export function logout() {
  return api('DELETE', '/api/session', undefined, { quiet401: true });
}
