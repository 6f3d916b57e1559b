// Runs before the first paint (a classic, blocking script): sets the theme so a dark-theme
// visitor never sees a flash of the light one. js/prefs.js owns the choice after this.
(function () {
  var t = null;
  try {
    t = localStorage.getItem('signalbox.theme');
  } catch (e) {
    t = null;
  }
  if (t !== 'light' && t !== 'dark') t = window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  document.documentElement.setAttribute('data-theme', t);
})();
