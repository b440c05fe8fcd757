// /logs: live lines are filtered like the page (level and worse, job, logger), kept to the
// last 2000, and the list follows the newest line unless the reader scrolled up: then new lines
// wait (counted) until they scroll back down or press Resume.
(() => {
  const LEVELS = ['debug', 'info', 'warning', 'error', 'critical'];
  const MAX_LINES = 2000;
  const box = document.getElementById('log-lines');
  if (!box) return;
  const banner = document.getElementById('log-paused');
  const heldCount = banner.querySelector('[data-testid=log-held]');
  const floor = LEVELS.indexOf(box.dataset.level || 'debug');
  const job = box.dataset.job || '';
  const logger = box.dataset.logger || '';
  let held = [];
  let paused = false;

  const atBottom = () => box.scrollHeight - box.scrollTop - box.clientHeight < 24;
  const keep = (li) => {
    if (LEVELS.indexOf(li.dataset.level) < floor) return false;
    if (job && !(li.dataset.job || '').startsWith(job)) return false;
    const name = li.dataset.logger || '';
    return !logger || name === logger || name.startsWith(logger + '.');
  };
  const append = (html) => {
    const tpl = document.createElement('template');
    tpl.innerHTML = html;
    for (const li of Array.from(tpl.content.children)) if (keep(li)) box.appendChild(li);
    while (box.children.length > MAX_LINES) box.firstElementChild.remove();
    box.scrollTop = box.scrollHeight;
  };
  const show = () => {
    banner.hidden = !paused;
    heldCount.textContent = String(held.reduce((n, h) => n + (h.match(/<li/g) || []).length, 0));
  };
  const resume = () => {
    paused = false;
    const waiting = held; held = [];
    for (const html of waiting) append(html);
    box.scrollTop = box.scrollHeight;
    show();
  };
  box.scrollTop = box.scrollHeight;
  box.addEventListener('scroll', () => {
    if (atBottom()) { if (paused) resume(); }
    else if (!paused) { paused = true; show(); }
  });
  document.getElementById('log-resume').addEventListener('click', resume);
  // take the swap over: filter, bound, follow, or hold while paused
  box.addEventListener('htmx:sseBeforeMessage', (e) => {
    e.preventDefault();
    if (paused) { held.push(e.detail.data); show(); } else append(e.detail.data);
  });
})();
