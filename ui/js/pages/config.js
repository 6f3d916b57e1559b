// Central configuration (/config, /config/{app}/{profile}/{key}): browse keys by
// application and profile, edit with compare-and-set, create, delete, history, side-by-side
// diff and rollback. Follows /api/config/events so the tree and the open key stay current.

import { h, setChildren, empty, notice, timeEl, plural } from '../dom.js';
import { api, seg, configPath } from '../api.js';
import { navigate } from '../router.js';
import { stream } from '../stream.js';

const keyHref = (app, profile, key) => `/config/${seg(app)}/${seg(profile)}/${seg(key)}`;
const sameSel = (a, b) => !!a && !!b && a.app === b.app && a.profile === b.profile && a.key === b.key;

export default {
  title: (p) => (p.key ? `${p.key} · Configuration` : 'Configuration'),
  mount(main, params) {
    let entries = null; // live entries from GET /api/config
    let listError = null;
    let filterText = '';
    const collapsed = new Set(); // applications folded in the tree
    let sel = null; // { app, profile, key }
    let view = null; // the open key's view (see keyView)

    const tree = h('div', { class: 'tree', 'data-testid': 'config-tree' });
    const treeCount = h('span', { class: 'panel-count' });
    const filter = h('input', {
      type: 'search',
      class: 'input input-sm',
      placeholder: 'Filter keys',
      'aria-label': 'Filter keys',
      'data-testid': 'config-filter',
      oninput: () => {
        filterText = filter.value.trim().toLowerCase();
        paintTree();
      },
    });
    const content = h('div', { class: 'config-main' });

    setChildren(
      main,
      h(
        'div',
        { class: 'page-head' },
        h('h1', null, 'Configuration'),
        h('div', { class: 'spacer' }),
        h('a', { href: '/config?new', class: 'btn btn-primary', 'data-testid': 'config-new' }, '+ New key'),
      ),
      h(
        'div',
        { class: 'config-layout' },
        h('aside', { class: 'panel tree-panel' }, h('div', { class: 'panel-head' }, h('h2', null, 'Keys'), treeCount), h('div', { class: 'tree-filter' }, filter), tree),
        content,
      ),
    );

    // The key list ----------------------------------------------------------------------

    async function refreshList() {
      try {
        const r = await api('GET', '/api/config');
        entries = r.entries;
        listError = null;
      } catch (e) {
        if (e.status === 401) return;
        listError = e.message;
      }
      paintTree();
      if (!sel && !params.create) paintIndex();
    }

    function grouped(list) {
      const apps = new Map();
      for (const e of list) {
        if (!apps.has(e.application)) apps.set(e.application, new Map());
        const profiles = apps.get(e.application);
        if (!profiles.has(e.profile)) profiles.set(e.profile, []);
        profiles.get(e.profile).push(e);
      }
      const sorted = (m) => Array.from(m.entries()).sort((a, b) => a[0].localeCompare(b[0]));
      return sorted(apps).map(([app, profiles]) => [app, sorted(profiles).map(([p, keys]) => [p, keys.sort((a, b) => a.key.localeCompare(b.key))])]);
    }

    function paintTree() {
      if (listError) {
        setChildren(tree, notice('error', `Could not load configuration: ${listError}`));
        return;
      }
      if (!entries) {
        setChildren(tree, h('div', { class: 'empty' }, 'Loading…'));
        return;
      }
      const list = filterText ? entries.filter((e) => `${e.application}/${e.profile}/${e.key}`.toLowerCase().includes(filterText)) : entries;
      treeCount.textContent = filterText ? `${list.length} of ${entries.length}` : plural(entries.length, 'key');
      if (!entries.length) {
        setChildren(tree, h('div', { class: 'empty' }, 'No keys yet.'));
        return;
      }
      if (!list.length) {
        setChildren(tree, h('div', { class: 'empty' }, 'No key matches the filter.'));
        return;
      }
      setChildren(
        tree,
        grouped(list).map(([app, profiles]) => {
          const folded = collapsed.has(app) && !filterText;
          return h(
            'div',
            { class: `tree-app${folded ? ' folded' : ''}`, 'data-testid': 'config-app', 'data-app': app },
            h(
              'button',
              {
                type: 'button',
                class: 'tree-app-name',
                'aria-expanded': String(!folded),
                onclick: () => {
                  if (collapsed.has(app)) collapsed.delete(app);
                  else collapsed.add(app);
                  paintTree();
                },
              },
              h('span', { class: 'caret' }),
              app,
              h('span', { class: 'tree-count' }, String(profiles.reduce((n, [, k]) => n + k.length, 0))),
            ),
            folded
              ? null
              : profiles.map(([profile, keys]) =>
                  h(
                    'div',
                    { class: 'tree-profile', 'data-profile': profile },
                    h('div', { class: 'tree-profile-name' }, profile),
                    keys.map((e) =>
                      h(
                        'a',
                        {
                          href: keyHref(app, profile, e.key),
                          class: `tree-key${sameSel(sel, { app, profile, key: e.key }) ? ' active' : ''}`,
                          'data-testid': 'config-key-link',
                          'data-app': app,
                          'data-profile': profile,
                          'data-key': e.key,
                          title: `${app}/${profile}/${e.key} — version ${e.version}`,
                        },
                        h('span', { class: 'tree-key-name' }, e.key),
                        h('span', { class: 'tree-ver' }, `v${e.version}`),
                      ),
                    ),
                  ),
                ),
          );
        }),
      );
    }

    // The index (nothing selected) ----------------------------------------------------

    function paintIndex() {
      if (!entries) {
        setChildren(content, h('section', { class: 'panel' }, h('div', { class: 'empty' }, listError ? listError : 'Loading…')));
        return;
      }
      if (!entries.length) {
        setChildren(
          content,
          h('section', { class: 'panel' }, empty('No configuration yet', 'Central configuration holds versioned values per application, profile and key. ', h('a', { href: '/config?new' }, 'Create the first key'), '.')),
        );
        return;
      }
      const latest = [...entries].sort((a, b) => a.application.localeCompare(b.application) || a.profile.localeCompare(b.profile) || a.key.localeCompare(b.key));
      setChildren(
        content,
        h(
          'section',
          { class: 'panel' },
          h('div', { class: 'panel-head' }, h('h2', null, 'All keys'), h('span', { class: 'panel-count' }, `${plural(new Set(entries.map((e) => e.application)).size, 'application')}, ${plural(entries.length, 'key')}`)),
          h(
            'table',
            { class: 'table table-hover', 'data-testid': 'config-table' },
            h('thead', null, h('tr', null, h('th', null, 'Application'), h('th', null, 'Profile'), h('th', null, 'Key'), h('th', { class: 'num' }, 'Version'), h('th', null, 'Author'), h('th', null, 'Updated'), h('th', null, 'Value'))),
            h(
              'tbody',
              null,
              latest.map((e) =>
                h(
                  'tr',
                  { class: 'clickable', onclick: (ev) => !ev.target.closest('a') && navigate(keyHref(e.application, e.profile, e.key)) },
                  h('td', null, e.application),
                  h('td', null, e.profile),
                  h('td', null, h('a', { href: keyHref(e.application, e.profile, e.key), class: 'mono', 'data-testid': 'config-table-link' }, e.key)),
                  h('td', { class: 'num' }, `v${e.version}`),
                  h('td', null, e.author),
                  h('td', null, timeEl(e.time_unix_ms)),
                  h('td', { class: 'mono value-preview', title: e.value }, preview(e.value)),
                ),
              ),
            ),
          ),
        ),
      );
    }

    // New key ------------------------------------------------------------------------

    function paintCreate() {
      const apps = entries ? Array.from(new Set(entries.map((e) => e.application))).sort() : [];
      const profiles = entries ? Array.from(new Set(entries.map((e) => e.profile))).sort() : [];
      const field = (label, input, hint) => h('label', { class: 'field' }, h('span', { class: 'field-label' }, label), input, hint ? h('span', { class: 'field-hint' }, hint) : null);
      const app = h('input', { class: 'input', name: 'application', required: true, list: 'cfg-apps', autocomplete: 'off', spellcheck: 'false', 'data-testid': 'new-app', placeholder: 'orders' });
      const profile = h('input', { class: 'input', name: 'profile', required: true, list: 'cfg-profiles', autocomplete: 'off', spellcheck: 'false', 'data-testid': 'new-profile', value: 'default' });
      const key = h('input', { class: 'input', name: 'key', required: true, autocomplete: 'off', spellcheck: 'false', 'data-testid': 'new-key', placeholder: 'db.url' });
      const value = h('textarea', { class: 'input editor', name: 'value', rows: 8, spellcheck: 'false', 'data-testid': 'new-value' });
      const comment = h('input', { class: 'input', name: 'comment', autocomplete: 'off', 'data-testid': 'new-comment', placeholder: 'Why this key exists (optional)' });
      const msg = h('div', { 'data-testid': 'new-error' });
      const submit = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'new-submit' }, 'Create key');
      const inputs = { application: app, profile, key, value, comment };
      const form = h(
        'form',
        {
          class: 'panel form',
          'data-testid': 'new-key-form',
          onsubmit: async (ev) => {
            ev.preventDefault();
            for (const i of Object.values(inputs)) i.classList.remove('invalid');
            msg.replaceChildren();
            const a = app.value.trim();
            const p = profile.value.trim();
            const k = key.value.trim();
            submit.disabled = true;
            try {
              await api('PUT', configPath(a, p, k), { value: value.value, comment: comment.value, expected_version: 0 });
              await refreshList();
              navigate(keyHref(a, p, k));
            } catch (e) {
              submit.disabled = false;
              if (e.status === 409) {
                setChildren(
                  msg,
                  notice('error', `${a}/${p}/${k} already exists (version ${e.body && e.body.current_version}). `, h('a', { href: keyHref(a, p, k) }, 'Open it'), ' to edit it.'),
                );
              } else {
                if (e.field && inputs[e.field]) inputs[e.field].classList.add('invalid');
                setChildren(msg, notice('error', `Not created: ${e.message}`));
              }
            }
          },
        },
        h('div', { class: 'panel-head' }, h('h2', null, 'New key')),
        h('datalist', { id: 'cfg-apps' }, apps.map((a) => h('option', { value: a }))),
        h('datalist', { id: 'cfg-profiles' }, profiles.map((p) => h('option', { value: p }))),
        h(
          'div',
          { class: 'form-row' },
          field('Application', app, 'letters, digits, - _ .'),
          field('Profile', profile, 'e.g. default, prod'),
          field('Key', key, 'letters, digits, - _ . / :'),
        ),
        field('Value', value),
        field('Comment', comment),
        msg,
        h('div', { class: 'form-actions' }, submit, h('a', { href: '/config', class: 'btn' }, 'Cancel')),
      );
      setChildren(content, form);
      app.focus();
    }

    // One key --------------------------------------------------------------------------

    function openKey(s) {
      if (view) view.close();
      view = keyView(s, { refreshList });
      setChildren(content, view.el);
    }

    function show(p) {
      params = p;
      if (p.key !== undefined) {
        const s = { app: p.app, profile: p.profile, key: p.key };
        if (!sameSel(s, sel) || !view) {
          sel = s;
          openKey(s);
        }
      } else {
        sel = null;
        if (view) view.close();
        view = null;
        if (p.create) paintCreate();
        else paintIndex();
      }
      paintTree();
    }

    // Live: changes from anyone refresh the tree and the open key's history.
    let refreshTimer = null;
    // The `config` topic of the tab's one live stream (stream.js).
    const offConfig = stream.subscribe('config', (kind, d) => {
      if (kind === 'reset') {
        refreshList();
      } else if (kind === 'change' && d) {
        clearTimeout(refreshTimer);
        refreshTimer = setTimeout(refreshList, 150);
        if (view) for (const c of d.changes || []) view.external(c);
      }
    });

    show(params);
    refreshList();

    return {
      update(p) {
        show(p);
      },
      unmount() {
        offConfig();
        clearTimeout(refreshTimer);
        if (view) view.close();
      },
    };
  },
};

function preview(v) {
  const first = v.split('\n')[0];
  return first.length > 60 ? first.slice(0, 60) + '…' : v.includes('\n') ? first + ' …' : first;
}

/**
 * The editor, history and diff of one key. `external(change)` is told about changes from
 * the config event stream.
 */
function keyView(sel, { refreshList }) {
  const path = configPath(sel.app, sel.profile, sel.key);
  let loaded = null; // the Entry in the editor (null: key missing or deleted)
  let loadedVersion = 0; // the version compare-and-set expects (0: create)
  let serverVersion = 0; // newest version known to exist
  let seenVersion = 0; // the version the view shows (a tombstone's when deleted)
  let history = [];
  let diffFrom = null;
  let diffTo = null;
  let busy = false;
  let conflict = false; // a version-conflict message is showing (it says what the stale notice would)
  let closed = false;
  let loadSeq = 0;

  const version = h('strong', { 'data-testid': 'config-version' }, '–');
  const metaLine = h('div', { class: 'meta' });
  const message = h('div', { 'data-testid': 'config-message', 'aria-live': 'polite' });
  const stale = h('div', { 'data-testid': 'config-stale' });
  const dirtyTag = h('span', { class: 'tag tag-warn', hidden: true, 'data-testid': 'config-dirty' }, 'modified');
  const editor = h('textarea', {
    class: 'input editor',
    rows: 10,
    spellcheck: 'false',
    autocomplete: 'off',
    'aria-label': 'Value',
    'data-testid': 'config-editor',
    disabled: true,
    oninput: () => paintDirty(),
    onkeydown: (ev) => {
      if ((ev.ctrlKey || ev.metaKey) && ev.key === 's') {
        ev.preventDefault();
        if (!save.disabled) doSave();
      }
    },
  });
  const comment = h('input', { class: 'input', placeholder: 'Describe the change (optional)', 'aria-label': 'Comment', 'data-testid': 'config-comment' });
  const save = h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'config-save', disabled: true, title: 'Save (Ctrl+S)', onclick: () => doSave() }, 'Save');
  const revert = h('button', { type: 'button', class: 'btn', 'data-testid': 'config-revert', disabled: true, onclick: () => revertEdit() }, 'Discard changes');
  const del = confirmButton('Delete', 'Confirm delete', 'btn btn-danger', 'config-delete', () => doDelete());

  const historyBody = h('tbody');
  const historyWrap = h('div');
  const diffButton = h('button', { type: 'button', class: 'btn btn-sm', 'data-testid': 'diff-button', onclick: () => showDiff() }, 'Compare');
  const diffPanel = h('section', { class: 'panel', 'data-testid': 'diff-panel', hidden: true });

  const el = h(
    'div',
    { class: 'key-view', 'data-testid': 'key-view' },
    h(
      'section',
      { class: 'panel' },
      h(
        'div',
        { class: 'panel-head' },
        h(
          'h2',
          { class: 'key-title', 'data-testid': 'key-title' },
          h('span', { class: 'crumb-part' }, sel.app),
          h('span', { class: 'crumb-sep' }, '/'),
          h('span', { class: 'crumb-part' }, sel.profile),
          h('span', { class: 'crumb-sep' }, '/'),
          h('span', { class: 'mono' }, sel.key),
        ),
        h('span', { class: 'panel-count' }, 'version ', version),
      ),
      metaLine,
      stale,
      message,
      h('div', { class: 'editor-wrap' }, editor),
      h('div', { class: 'editor-actions' }, comment, save, revert, dirtyTag, h('div', { class: 'spacer' }), del.el),
    ),
    h(
      'section',
      { class: 'panel', 'data-testid': 'history-panel' },
      h('div', { class: 'panel-head' }, h('h2', null, 'History'), h('span', { class: 'panel-hint' }, 'Pick two versions to compare'), h('div', { class: 'spacer' }), diffButton),
      historyWrap,
    ),
    diffPanel,
  );

  // Loading --------------------------------------------------------------------------

  async function load({ keepMessage = false } = {}) {
    const seq = ++loadSeq;
    const [entry, hist] = await Promise.allSettled([api('GET', path), api('GET', `${path}/history`)]);
    if (closed || seq !== loadSeq) return;
    if (!keepMessage) message.replaceChildren();
    conflict = false;
    stale.replaceChildren();
    history = hist.status === 'fulfilled' ? hist.value.versions : [];
    if (entry.status === 'fulfilled') {
      setLoaded(entry.value);
    } else if (entry.reason.status === 404 && history.length) {
      const last = history[history.length - 1];
      setLoaded(null, last.version);
      setChildren(message, notice('warning', `This key was deleted in version ${last.version}. Roll back to an earlier version to restore it, or save a new value.`));
    } else if (entry.reason.status === 404) {
      setLoaded(null);
      setChildren(message, notice('error', `${sel.app}/${sel.profile}/${sel.key} does not exist. `, h('a', { href: '/config?new' }, 'Create a key'), '.'));
      editor.disabled = true;
    } else {
      if (entry.reason.status !== 401) setChildren(message, notice('error', `Could not load the key: ${entry.reason.message}`));
    }
    paintHistory();
  }

  function setLoaded(e, tombstone = 0) {
    loaded = e;
    loadedVersion = e ? e.version : 0;
    seenVersion = e ? e.version : tombstone;
    serverVersion = Math.max(serverVersion, seenVersion);
    editor.value = e ? e.value : '';
    editor.disabled = false;
    editor.rows = Math.min(24, Math.max(6, editor.value.split('\n').length + 1));
    version.textContent = e ? String(e.version) : 'deleted';
    if (e) {
      setChildren(
        metaLine,
        h('span', null, 'Saved by ', h('strong', null, e.author || 'unknown'), ' ', timeEl(e.time_unix_ms)),
        e.comment ? h('span', { class: 'meta-comment' }, '“', e.comment, '”') : null,
        h('span', { class: 'muted' }, `index ${e.index}`),
        h('a', { href: `/config/${seg(sel.app)}/${seg(sel.profile)}`, 'data-external': '', class: 'muted', target: '_blank', title: 'What Spring Cloud Config clients receive for this application and profile' }, 'Spring view ↗'),
      );
    } else {
      metaLine.replaceChildren();
    }
    paintDirty();
  }

  function paintDirty() {
    const dirty = editor.value !== (loaded ? loaded.value : '');
    dirtyTag.hidden = !dirty;
    save.disabled = busy || !dirty;
    revert.disabled = busy || !dirty;
    del.button.disabled = busy || !loaded;
  }

  function setBusy(b) {
    busy = b;
    paintDirty();
    if (!b) checkStale();
  }

  function revertEdit() {
    editor.value = loaded ? loaded.value : '';
    paintDirty();
  }

  // Someone else's change -------------------------------------------------------------

  function external(c) {
    if (c.application !== sel.app || c.profile !== sel.profile || c.key !== sel.key) return;
    serverVersion = Math.max(serverVersion, c.version);
    if (!busy) {
      checkStale();
      refreshHistory();
    }
  }

  function checkStale() {
    if (serverVersion > seenVersion && !conflict) {
      setChildren(
        stale,
        notice(
          'warning',
          `Version ${serverVersion} of this key was written elsewhere while you have version ${seenVersion || 'none'} open. `,
          h('button', { type: 'button', class: 'btn btn-sm', 'data-testid': 'stale-reload', onclick: () => load() }, 'Load latest'),
        ),
      );
    } else {
      stale.replaceChildren();
    }
  }

  async function refreshHistory() {
    try {
      const r = await api('GET', `${path}/history`);
      if (closed) return;
      history = r.versions;
      for (const v of history) serverVersion = Math.max(serverVersion, v.version);
      paintHistory();
    } catch {
      /* the next load shows the error */
    }
  }

  // Writes ----------------------------------------------------------------------------

  async function doSave() {
    setBusy(true);
    message.replaceChildren();
    conflict = false;
    try {
      const e = await api('PUT', path, { value: editor.value, comment: comment.value, expected_version: loadedVersion });
      setLoaded(e);
      comment.value = '';
      setChildren(message, notice('success', `Saved version ${e.version}.`));
      await refreshHistory();
      refreshList();
    } catch (err) {
      writeError(err, 'Not saved');
    } finally {
      setBusy(false);
    }
  }

  async function doDelete() {
    setBusy(true);
    message.replaceChildren();
    conflict = false;
    try {
      const e = await api('DELETE', `${path}?expected_version=${loadedVersion}`);
      setLoaded(null, e.version);
      setChildren(message, notice('success', `Deleted (version ${e.version} is a tombstone). The history is kept: roll back to restore the key.`));
      await refreshHistory();
      refreshList();
    } catch (err) {
      writeError(err, 'Not deleted');
    } finally {
      setBusy(false);
    }
  }

  async function doRollback(to) {
    setBusy(true);
    message.replaceChildren();
    conflict = false;
    try {
      const e = await api('POST', `${path}/rollback`, {
        to_version: to,
        comment: comment.value || `rollback to version ${to}`,
        expected_version: loadedVersion,
      });
      comment.value = '';
      serverVersion = Math.max(serverVersion, e.version);
      await load({ keepMessage: true });
      setChildren(message, notice('success', `Rolled back to version ${to}: saved as version ${e.version}.`));
      refreshList();
    } catch (err) {
      writeError(err, 'Not rolled back');
    } finally {
      setBusy(false);
    }
  }

  function writeError(err, what) {
    if (err.status === 409) {
      const current = err.body && err.body.current_version;
      serverVersion = Math.max(serverVersion, current || 0);
      conflict = true;
      stale.replaceChildren();
      setChildren(
        message,
        h(
          'div',
          { class: 'notice notice-error conflict', role: 'alert', 'data-testid': 'config-conflict' },
          h('strong', null, `${what}: version conflict. `),
          current
            ? `Someone else saved version ${current} after you loaded version ${loadedVersion || 'none'}. `
            : `The key was deleted after you loaded version ${loadedVersion}. `,
          'Reload to see the current value; reloading replaces your edit, so copy it first if you need it. ',
          h('div', { class: 'notice-actions' }, h('button', { type: 'button', class: 'btn btn-sm btn-primary', 'data-testid': 'config-reload', onclick: () => load() }, 'Reload latest'), current && loadedVersion ? h('button', { type: 'button', class: 'btn btn-sm', onclick: () => showDiff(loadedVersion, current) }, `Compare v${loadedVersion} → v${current}`) : null),
        ),
      );
      refreshHistory();
    } else if (err.status !== 401) {
      setChildren(message, h('div', { class: 'notice notice-error', role: 'alert', 'data-testid': 'config-error' }, `${what}: ${err.message}`));
    }
  }

  // History ---------------------------------------------------------------------------

  function paintHistory() {
    if (!history.length) {
      setChildren(historyWrap, h('div', { class: 'empty' }, 'No history.'));
      diffButton.disabled = true;
      return;
    }
    const versions = history.map((v) => v.version);
    if (!versions.includes(diffFrom) || !versions.includes(diffTo) || diffFrom === diffTo) {
      diffTo = versions[versions.length - 1];
      diffFrom = versions.length > 1 ? versions[versions.length - 2] : diffTo;
    }
    diffButton.disabled = versions.length < 2;
    const head = history[history.length - 1].version;
    const dirty = () => editor.value !== (loaded ? loaded.value : '');
    const rows = [...history].reverse().map((v) => {
      const isHead = v.version === head;
      const from = h('input', { type: 'radio', name: 'diff-from', value: String(v.version), checked: v.version === diffFrom, 'data-testid': 'diff-from', 'aria-label': `Compare from version ${v.version}`, onchange: () => (diffFrom = v.version) });
      const to = h('input', { type: 'radio', name: 'diff-to', value: String(v.version), checked: v.version === diffTo, 'data-testid': 'diff-to', 'aria-label': `Compare to version ${v.version}`, onchange: () => (diffTo = v.version) });
      let action;
      if (isHead) action = null;
      else if (v.deleted) action = h('span', { class: 'muted', title: 'A deletion cannot be rolled back to' }, '—');
      else {
        const b = confirmButton('Roll back', 'Discard edit & roll back', 'btn btn-sm', 'rollback-button', () => doRollback(v.version), dirty);
        b.button.dataset.version = String(v.version);
        b.button.title = `Write a new version with the value of version ${v.version}`;
        action = b.el;
      }
      return h(
        'tr',
        { 'data-testid': 'history-row', 'data-version': String(v.version), class: isHead ? 'head' : '' },
        h('td', { class: 'radio' }, from),
        h('td', { class: 'radio' }, to),
        h('td', { class: 'num' }, h('strong', null, `v${v.version}`)),
        h('td', null, v.deleted ? h('span', { class: 'badge status-critical', 'data-testid': 'history-deleted' }, 'deleted') : isHead ? h('span', { class: 'badge badge-plain' }, 'current') : ''),
        h('td', null, v.author),
        h('td', { class: 'nowrap' }, timeEl(v.time_unix_ms)),
        h('td', { class: 'comment' }, v.comment || h('span', { class: 'muted' }, '—')),
        h('td', { class: 'mono value-preview', title: v.value }, v.deleted ? '' : preview(v.value)),
        h('td', { class: 'actions' }, action),
      );
    });
    setChildren(
      historyWrap,
      h(
        'table',
        { class: 'table history', 'data-testid': 'history-table' },
        h(
          'thead',
          null,
          h('tr', null, h('th', { class: 'radio', title: 'Compare from' }, 'From'), h('th', { class: 'radio', title: 'Compare to' }, 'To'), h('th', { class: 'num' }, 'Version'), h('th', null, ''), h('th', null, 'Author'), h('th', null, 'When'), h('th', null, 'Comment'), h('th', null, 'Value'), h('th', null, '')),
        ),
        h('tbody', null, rows),
      ),
    );
  }

  // Diff ------------------------------------------------------------------------------

  async function showDiff(from = diffFrom, to = diffTo) {
    if (from === to) {
      diffPanel.hidden = false;
      setChildren(diffPanel, notice('info', 'Pick two different versions to compare.'));
      return;
    }
    try {
      const d = await api('GET', `${path}/diff?from=${from}&to=${to}`);
      if (closed) return;
      renderDiff(d);
    } catch (e) {
      diffPanel.hidden = false;
      if (e.status !== 401) setChildren(diffPanel, notice('error', `Could not compute the diff: ${e.message}`));
    }
  }

  function renderDiff(d) {
    diffPanel.hidden = false;
    const rows = sideBySide(d.lines);
    const added = d.lines.filter((l) => l.op === 'insert').length;
    const removed = d.lines.filter((l) => l.op === 'delete').length;
    const unified = h('pre', { class: 'unified', hidden: true, 'data-testid': 'diff-unified' }, d.unified);
    const toggle = h(
      'button',
      {
        type: 'button',
        class: 'btn btn-sm',
        onclick: () => {
          unified.hidden = !unified.hidden;
          table.hidden = !unified.hidden;
          toggle.textContent = unified.hidden ? 'Unified' : 'Side by side';
        },
      },
      'Unified',
    );
    const cell = (side, line) => {
      if (!line) return [h('td', { class: 'ln' }), h('td', { class: 'code filler', 'data-side': side, 'data-op': 'none' })];
      const op = line.op;
      return [
        h('td', { class: `ln ln-${op}` }, String(side === 'old' ? line.old_line : line.new_line)),
        h('td', { class: `code code-${op}`, 'data-side': side, 'data-op': op, 'data-testid': `diff-${side}` }, h('span', { class: 'sign' }, op === 'delete' ? '−' : op === 'insert' ? '+' : ' '), line.text),
      ];
    };
    const table = h(
      'table',
      { class: 'diff', 'data-testid': 'diff-table', 'data-from': String(d.from), 'data-to': String(d.to) },
      h('colgroup', null, h('col', { class: 'c-ln' }), h('col', { class: 'c-code' }), h('col', { class: 'c-ln' }), h('col', { class: 'c-code' })),
      h('thead', null, h('tr', null, h('th', { colspan: 2 }, `Version ${d.from}`), h('th', { colspan: 2 }, `Version ${d.to}`))),
      h(
        'tbody',
        null,
        rows.length
          ? rows.map(([l, r]) => h('tr', { 'data-testid': 'diff-row', class: l && l.op === 'equal' ? 'same' : 'changed' }, ...cell('old', l), ...cell('new', r)))
          : h('tr', null, h('td', { colspan: 4, class: 'empty' }, 'Both versions are empty.')),
      ),
    );
    setChildren(
      diffPanel,
      h(
        'div',
        { class: 'panel-head' },
        h('h2', null, `Diff v${d.from} → v${d.to}`),
        h('span', { class: 'panel-count' }, added || removed ? [h('span', { class: 'diff-stat-ins' }, `+${added}`), ' ', h('span', { class: 'diff-stat-del' }, `−${removed}`)] : 'no differences'),
        h('div', { class: 'spacer' }),
        toggle,
        h('button', { type: 'button', class: 'btn btn-sm', onclick: () => (diffPanel.hidden = true) }, 'Close'),
      ),
      h('div', { class: 'table-scroll' }, table),
      unified,
    );
    diffPanel.scrollIntoView({ block: 'nearest' });
  }

  load();

  return {
    el,
    external,
    close() {
      closed = true;
      del.cancel();
    },
  };
}

/**
 * Pairs diff lines for two columns: unchanged lines side by side; within a run of changes,
 * the i-th deleted line sits beside the i-th inserted line.
 */
export function sideBySide(lines) {
  const rows = [];
  let dels = [];
  let ins = [];
  const flush = () => {
    const n = Math.max(dels.length, ins.length);
    for (let i = 0; i < n; i++) rows.push([dels[i] || null, ins[i] || null]);
    dels = [];
    ins = [];
  };
  for (const l of lines) {
    if (l.op === 'equal') {
      flush();
      rows.push([l, l]);
    } else if (l.op === 'delete') dels.push(l);
    else ins.push(l);
  }
  flush();
  return rows;
}

/**
 * A button that asks for a second click before acting (when `needConfirm()` says so;
 * always when it is not given). Returns { el, button, cancel }.
 */
function confirmButton(label, confirmLabel, cls, testid, action, needConfirm = () => true) {
  let armed = false;
  let timer = null;
  const cancel = () => {
    armed = false;
    clearTimeout(timer);
    button.textContent = label;
    button.classList.remove('armed');
  };
  const button = h(
    'button',
    {
      type: 'button',
      class: cls,
      'data-testid': testid,
      onclick: () => {
        if (!armed && needConfirm()) {
          armed = true;
          button.textContent = confirmLabel;
          button.classList.add('armed');
          timer = setTimeout(cancel, 4000);
          return;
        }
        cancel();
        action();
      },
    },
    label,
  );
  return { el: button, button, cancel };
}
