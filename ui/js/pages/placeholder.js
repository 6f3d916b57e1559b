// Pages that arrive with a later release, and the not-found page.

import { h, setChildren } from '../dom.js';

export function placeholder(title, what) {
  return {
    title,
    mount(main) {
      setChildren(
        main,
        h('div', { class: 'page-head' }, h('h1', null, title)),
        h(
          'div',
          { class: 'placeholder', 'data-testid': 'placeholder' },
          h('div', { class: 'placeholder-title' }, `${title} arrives with a later release.`),
          h('p', null, what),
        ),
      );
      return {};
    },
  };
}

export const notFound = {
  title: 'Not found',
  mount(main, params) {
    setChildren(
      main,
      h('div', { class: 'page-head' }, h('h1', null, 'Page not found')),
      h('div', { class: 'placeholder' }, h('p', null, 'Nothing in the console lives at ', h('code', null, params.path), '.'), h('p', null, h('a', { href: '/' }, 'Go to the overview'))),
    );
    return {};
  },
};
