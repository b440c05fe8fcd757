// The layout checks e2e/test_layout.py runs in the page: (strict) => {problems, checked}.
// strict (desktop width): nothing may scroll sideways inside a card either (but the
// model x date grid and <pre> blocks, which scroll by design).
(strict) => {
  const vw = document.documentElement.clientWidth;
  const problems = [];
  const name = (el) => {
    let s = el.tagName.toLowerCase();
    if (el.id) s += '#' + el.id;
    if (el.dataset && el.dataset.testid) s += `[data-testid=${el.dataset.testid}]`;
    else if (typeof el.className === 'string' && el.className.trim()) s += '.' + el.className.trim().split(/\s+/).join('.');
    const text = (el.textContent || '').replace(/\s+/g, ' ').trim().slice(0, 40);
    return text ? `${s} ("${text}")` : s;
  };
  const scrolls = (el) => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
  const clips = (el) => getComputedStyle(el).overflowX !== 'visible';
  const overflow = document.documentElement.scrollWidth - vw;
  if (overflow > 1) problems.push(`the page scrolls sideways by ${overflow}px`);
  const main = document.querySelector('main');
  const cards = new Set([...document.querySelectorAll('.card'), ...(main ? main.children : [])]);
  let checked = 0;
  const reported = new Set();
  for (const card of cards) {
    const c = card.getBoundingClientRect();
    if (!c.width) continue;
    if (c.left < -1 || c.right > vw + 1) problems.push(`${name(card)} spans ${Math.round(c.left)}..${Math.round(c.right)}px of a ${vw}px window`);
    if (strict && scrolls(card) && card.scrollWidth > card.clientWidth + 1)
      problems.push(`${name(card)} scrolls sideways (${card.scrollWidth}px of content in ${card.clientWidth}px)`);
    for (const el of card.querySelectorAll('*')) {
      const r = el.getBoundingClientRect();
      if (!r.width || !r.height) continue;
      checked += 1;
      // inside something that clips or scrolls (below the card, or the card itself for a table)?
      let inner = null;
      for (let a = el.parentElement; a && a !== card; a = a.parentElement) if (clips(a)) { inner = a; break; }
      if (inner) {
        if (strict && scrolls(inner) && inner.scrollWidth > inner.clientWidth + 1 && !reported.has(inner)
            && !inner.classList.contains('grid-wrap') && inner.tagName !== 'PRE') {
          reported.add(inner);
          problems.push(`${name(inner)} scrolls sideways at this width (${inner.scrollWidth}px in ${inner.clientWidth}px)`);
        }
        continue;  // its own box is checked as one of the card's elements
      }
      const inTable = el.closest('table');
      if (inTable && card.contains(inTable) && scrolls(card)) continue;  // a wide table scrolls in its card
      if ((r.left < c.left - 1 || r.right > c.right + 1) && !reported.has(el.parentElement)) {
        reported.add(el);
        problems.push(`${name(el)} spans ${Math.round(r.left)}..${Math.round(r.right)}px, outside ${name(card)} (${Math.round(c.left)}..${Math.round(c.right)}px)`);
      }
    }
  }
  // a cell cut short keeps its full text in a tooltip
  for (const el of document.querySelectorAll('main *')) {
    const st = getComputedStyle(el);
    if (st.textOverflow === 'ellipsis' && el.scrollWidth > el.clientWidth + 1 && !el.closest('[title]'))
      problems.push(`${name(el)} is cut short without a title`);
  }
  return {problems, checked};
}
