// sessionmon review console: small progressive enhancements. Everything
// works without this file; the CSP allows only same-origin scripts, so it
// is loaded from /static and uses no inline handlers.
'use strict';

document.addEventListener('DOMContentLoaded', () => {
  // Ask before destructive actions (forms marked data-confirm).
  for (const form of document.querySelectorAll('form[data-confirm]')) {
    form.addEventListener('submit', (ev) => {
      if (!window.confirm(form.dataset.confirm)) {
        ev.preventDefault();
      }
    });
  }

  // Filters apply as soon as a list is changed.
  const filters = document.getElementById('filters');
  if (filters) {
    for (const sel of filters.querySelectorAll('select')) {
      sel.addEventListener('change', () => filters.requestSubmit());
    }
  }

  // A false positive needs a note: say so before the round trip.
  const note = document.getElementById('note');
  const fp = document.getElementById('decision-false_positive');
  if (note && fp) {
    fp.addEventListener('click', (ev) => {
      if (note.value.trim() === '') {
        ev.preventDefault();
        note.setCustomValidity('Say why this is a false positive.');
        note.reportValidity();
      }
    });
    note.addEventListener('input', () => note.setCustomValidity(''));
  }

  // Times are rendered in UTC; show the reviewer's local time on hover.
  for (const t of document.querySelectorAll('time[datetime]')) {
    const d = new Date(t.dateTime);
    if (!Number.isNaN(d.getTime())) {
      t.title = d.toLocaleString();
    }
  }
});
