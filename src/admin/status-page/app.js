// @ts-check
// The status page's script (README "Status page"): inlined as it is into the
// page by ../status-page.ts, which allows exactly this text by its hash in the
// CSP. Plain ES2020 for any browser, no build step; `npm run typecheck` checks
// it against the DOM's types (./tsconfig.json), `npm run lint` lints it.

/**
 * JSON from the admin API as it arrives: every field is checked before use.
 * @typedef {Record<string, any>} Loose
 */
/** @typedef {'rate' | 'err' | 'p95'} ChartKey */
/** @typedef {{ t: number, rate: number | null, err: number | null, p95: number | null }} Point */
/** @typedef {{ key: ChartKey, title: string, floor: number, fmt: (n: number | null) => string, testid?: string }} Chart */

(function () {
  'use strict';
  var WINDOW_MS = 120000, POLL_MS = 1000, TIMEOUT_MS = 3000;
  var TOKEN_KEY = 'sluice.adminToken';
  var PALETTE = ['#0969da', '#1a7f37', '#bc4c00', '#8250df', '#cf222e', '#1b7c83', '#9a6700', '#bf3989'];
  var SVG = 'http://www.w3.org/2000/svg';
  /** @type {Chart[]} */
  var CHARTS = [
    { key: 'rate', title: 'Requests / s', floor: 1, fmt: fmtRate },
    { key: 'err', title: 'Error rate', floor: 0.01, fmt: fmtPct, testid: 'error-rate' },
    { key: 'p95', title: 'p95 latency', floor: 10, fmt: fmtMs }
  ];

  var token = sessionStorage.getItem(TOKEN_KEY) || '';
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  var timer;
  var ticks = 0, stopped = false;
  /** @type {Record<string, string>} */
  var colours = {};
  var nColours = 0;
  /** @type {Record<string, Point[]>} version -> its points of the last WINDOW_MS */
  var hist = {};
  /** @type {Record<string, { t: number, n: number, kind: string }>} version -> the last count, for the request rate */
  var prev = {};

  /** @param {string} id */
  function $(id) {
    var e = document.getElementById(id);
    if (!e) throw new Error('status page: no #' + id);
    return e;
  }

  /**
   * @param {string} tag an HTML tag, or "svg:" and an SVG one
   * @param {Record<string, unknown>} [attrs] `text`, `class`, `width%` and `bg` are special
   * @param {(Element | null)[]} [children]
   * @returns {HTMLElement | SVGElement}
   */
  function el(tag, attrs, children) {
    var e = tag.indexOf('svg:') === 0
      ? /** @type {SVGElement} */ (document.createElementNS(SVG, tag.slice(4)))
      : document.createElement(tag);
    if (attrs) for (var k in attrs) {
      var v = attrs[k];
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = String(v);
      else if (k === 'class') e.setAttribute('class', String(v));
      else if (k === 'width%') e.style.width = v + '%';
      else if (k === 'bg') e.style.background = String(v);
      else e.setAttribute(k, String(v));
    }
    if (children) for (var i = 0; i < children.length; i++) {
      var child = children[i];
      if (child) e.appendChild(child);
    }
    return e;
  }

  /** @param {unknown} v @returns {Loose | null} */
  function obj(v) { return v && typeof v === 'object' && !Array.isArray(v) ? /** @type {Loose} */ (v) : null; }
  /** @param {unknown} v @returns {number | null} */
  function num(v) { return typeof v === 'number' && isFinite(v) ? v : null; }
  /** @param {string} v @returns {string} */
  function colour(v) {
    var c = colours[v];
    if (!c) c = colours[v] = PALETTE[nColours++ % PALETTE.length] || '#000';
    return c;
  }
  /** @param {number | null} n */
  function fmtRate(n) { return n === null ? '-' : n < 10 ? n.toFixed(1) : String(Math.round(n)); }
  /** @param {number | null} n */
  function fmtPct(n) { return n === null ? '-' : (n * 100).toFixed(2) + '%'; }
  /** @param {number | null} n */
  function fmtMs(n) { return n === null ? '-' : n.toFixed(1) + ' ms'; }
  /** @param {number | null} n */
  function fmtCount(n) { return n === null ? '-' : String(n); }

  /** @param {string} kind @param {string} text */
  function setConn(kind, text) {
    var c = $('conn');
    c.className = 'conn ' + kind;
    c.textContent = text;
  }

  // ---- token ----

  /** @param {string} message */
  function askToken(message) {
    stopped = true;
    clearTimeout(timer);
    $('login-msg').textContent = message;
    $('login').hidden = false;
    setConn('error', 'token required');
    tokenInput.focus();
  }

  var tokenInput = /** @type {HTMLInputElement} */ ($('token'));

  $('token-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    token = tokenInput.value.trim();
    tokenInput.value = '';
    if (token) sessionStorage.setItem(TOKEN_KEY, token); else sessionStorage.removeItem(TOKEN_KEY);
    $('login').hidden = true;
    stopped = false;
    tick();
  });

  $('forget').addEventListener('click', function () {
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    askToken('Enter the admin token.');
  });

  // ---- polling ----

  function tick() {
    clearTimeout(timer);
    var ctrl = new AbortController();
    var to = setTimeout(function () { ctrl.abort(); }, TIMEOUT_MS);
    /** @type {Record<string, string>} */
    var headers = { accept: 'application/json' };
    if (token) headers.authorization = 'Bearer ' + token;
    fetch(new URL('v1/state', location.href), { headers: headers, signal: ctrl.signal, cache: 'no-store' })
      .then(function (res) {
        if (res.status === 401) {
          var had = !!token;
          token = '';
          sessionStorage.removeItem(TOKEN_KEY);
          askToken(had ? 'The token was rejected. Enter the admin token again.' : 'This admin API needs a token.');
          return null;
        }
        if (!res.ok) throw new Error('HTTP ' + res.status);
        return res.json();
      })
      .then(/** @param {Loose | null} state */ function (state) {
        if (!state) return;
        render(state, Date.now());
        ticks++;
        document.body.setAttribute('data-ticks', String(ticks));
        setConn('live', 'live');
      })
      .catch(function (err) {
        setConn('error', 'cannot reach the admin API: ' + (err && err.name === 'AbortError' ? 'timeout' : (err && err.message) || err));
      })
      .finally(function () {
        clearTimeout(to);
        if (!stopped) timer = setTimeout(tick, POLL_MS);
      });
  }

  // ---- rendering ----

  /** @param {Loose} s @param {number} now */
  function render(s, now) {
    var weights = obj(s.weights) || {};
    var versions = obj(s.versions) || {};
    var analysis = obj(s.analysis) || {};
    /** @type {string[]} */
    var names = [];
    [versions, weights, analysis].forEach(function (o) {
      Object.keys(o).forEach(function (k) { if (names.indexOf(k) < 0) names.push(k); });
    });
    names.forEach(colour);
    record(names, analysis, now);
    renderVersions(names, weights, versions);
    renderInstances(versions);
    renderRollout(obj(s.rollout), now);
    renderCharts(now);
    renderMirror(obj(s.mirror));
    var store = obj(s.store);
    $('store').textContent = store ? 'store: ' + store.kind + (store.up === false ? ' (down)' : '') : '';
    $('store').className = 'meta' + (store && store.up === false ? ' conn error' : '');
    $('updated').textContent = 'updated ' + new Date(now).toLocaleTimeString();
  }

  /** @param {unknown} spec @returns {Loose[]} */
  function instancesOf(spec) {
    var o = obj(spec);
    var list = o && o.instances;
    return Array.isArray(list) ? list.filter(obj) : [];
  }

  /** @param {Loose} i */
  function usable(i) { return i.healthy === true && i.draining !== true && i.ejected !== true; }

  /** @param {string[]} names @param {Loose} weights @param {Loose} versions */
  function renderVersions(names, weights, versions) {
    var rows = names.map(function (v) {
      var w = num(weights[v]) || 0;
      var inst = instancesOf(versions[v]);
      return el('div', { class: 'version', 'data-testid': 'version-' + v }, [
        el('span', { class: 'name' }, [el('span', { class: 'swatch', bg: colour(v) }), el('span', { text: v })]),
        el('div', { class: 'bar' }, [el('div', { class: 'fill', 'data-testid': 'weight-bar-' + v, 'width%': w, bg: colour(v) })]),
        el('span', { class: 'weight', 'data-testid': 'weight-' + v, text: w }),
        el('span', { class: 'usable', 'data-testid': 'usable-' + v, text: inst.filter(usable).length + '/' + inst.length + ' usable' })
      ]);
    });
    $('versions').replaceChildren.apply($('versions'), rows.length ? rows : [el('p', { class: 'empty', text: 'no versions' })]);
  }

  /** @param {unknown} on @param {string} yes @param {string} no @param {boolean} bad */
  function pill(on, yes, no, bad) {
    if (on === undefined || on === null) return el('span', { text: '-' });
    return el('span', { class: 'pill ' + (on ? (bad ? 'bad' : 'warn') : ''), text: on ? yes : no });
  }

  /** @param {Loose} i */
  function ejectedText(i) {
    var until = typeof i.ejectedUntil === 'string' ? new Date(i.ejectedUntil) : null;
    return until && isFinite(until.getTime()) ? 'ejected until ' + until.toLocaleTimeString() : 'ejected';
  }

  /** @param {Loose} versions */
  function renderInstances(versions) {
    /** @type {Element[]} */
    var rows = [];
    Object.keys(versions).forEach(function (v) {
      instancesOf(versions[v]).forEach(function (i, n) {
        rows.push(el('tr', { 'data-testid': 'instance', id: 'instance-' + v + '-' + n, 'data-version': v, 'data-url': i.url }, [
          el('td', { text: v }),
          el('td', { text: i.url || '-' }),
          el('td', { 'data-field': 'source', text: i.source || '-' }),
          el('td', { 'data-field': 'healthy' }, [i.healthy === undefined ? el('span', { text: '-' })
            : el('span', { class: 'pill ' + (i.healthy ? 'ok' : 'bad'), text: i.healthy ? 'healthy' : 'unhealthy' })]),
          el('td', { 'data-field': 'draining' }, [pill(i.draining, 'draining', 'no', false)]),
          el('td', { 'data-field': 'ejected' }, [pill(i.ejected, ejectedText(i), 'no', true)]),
          el('td', { class: 'num', 'data-field': 'inflight', text: fmtCount(num(i.inflight)) }),
          el('td', { class: 'num', 'data-field': 'websockets', text: fmtCount(num(i.websockets)) })
        ]));
      });
    });
    var body = $('instances-body');
    body.replaceChildren.apply(body, rows.length ? rows : [el('tr', {}, [el('td', { colspan: 8, class: 'empty', text: 'no instances' })])]);
  }

  /** @param {Loose | null} r @param {number} now */
  function renderRollout(r, now) {
    var status = r && typeof r.status === 'string' ? r.status : 'none';
    $('rollout-status').textContent = status;
    $('rollout-status').className = 'status ' + status;
    var active = r && r.canary !== undefined && r.canary !== null;
    $('rollout-versions').textContent = r && active ? r.canary + ' (baseline ' + (r.baseline || '-') + ')' : '-';
    var step = r ? num(r.step) : null;
    var text = '-';
    if (r && r.phase === 'mirror') text = 'mirror phase (before the first step)';
    else if (step !== null && step >= 0) {
      // Counted from 1 for people, as the CLI and the rollout's reasons do.
      text = String(step + 1);
      if (r && Array.isArray(r.steps)) {
        var s = obj(r.steps[step]);
        text += ' of ' + r.steps.length + (s && num(s.weight) !== null ? ' (canary ' + s.weight + '%)' : '');
      }
    }
    $('rollout-step').textContent = text;
    var hold = r ? holdLeft(r, now) : null;
    $('rollout-hold-row').hidden = hold === null;
    $('rollout-hold').textContent = hold === null ? '' : Math.ceil(hold / 1000) + ' s';
    $('rollout-reason').textContent = r && r.reason ? String(r.reason) : '-';
    var awaiting = r && typeof r.awaiting === 'string' ? r.awaiting : null;
    $('rollout-awaiting-row').hidden = awaiting === null;
    $('rollout-awaiting').textContent = awaiting === null ? '' : 'step ' + (step === null ? '-' : step + 1) + ' awaits ' + (awaiting === 'approval' ? 'an approval' : awaiting);
    $('rollout-approve').hidden = awaiting !== 'approval';
  }

  // An approval is the one change this page makes: the step waits for a person, who is looking at it.
  $('rollout-approve').addEventListener('click', function () {
    /** @type {Record<string, string>} */
    var headers = { accept: 'application/json' };
    if (token) headers.authorization = 'Bearer ' + token;
    $('rollout-approve-msg').textContent = '';
    fetch(new URL('v1/rollout/approve', location.href), { method: 'POST', headers: headers, cache: 'no-store' })
      .then(function (res) {
        return res.json().then(function (body) {
          $('rollout-approve-msg').textContent = res.ok ? 'approved' : (body && body.error && body.error.message) || 'HTTP ' + res.status;
        });
      })
      .catch(function (err) { $('rollout-approve-msg').textContent = String((err && err.message) || err); })
      .finally(tick);
  });

  // holdRemainingMs if the API computes it, else holdUntil, else the step's holdMs from holdStartedAt.
  /** @param {Loose} r @param {number} now @returns {number | null} */
  function holdLeft(r, now) {
    var left = num(r.holdRemainingMs);
    if (left !== null) return Math.max(0, left);
    var until = typeof r.holdUntil === 'string' ? Date.parse(r.holdUntil) : num(r.holdUntil);
    if (until !== null && !isNaN(until)) return Math.max(0, until - now);
    var started = num(r.holdStartedAt), step = num(r.step);
    if (r.status !== 'progressing' || started === null || step === null || !Array.isArray(r.steps)) return null;
    var hold = obj(r.steps[step]) ? num(r.steps[step].holdMs) : null;
    return hold === null ? null : Math.max(0, started + hold - now);
  }

  /** @param {Loose | null} m */
  function renderMirror(m) {
    $('mirror-panel').hidden = !m;
    if (!m) return;
    $('mirror-version').textContent = (m.version || '-') + (num(m.percent) !== null ? ' (' + m.percent + '%)' : '');
    $('mirror-copied').textContent = fmtCount(num(m.copied));
    $('mirror-mismatches').textContent = fmtCount(num(m.mismatches));
    $('mirror-p95').textContent = fmtMs(num(m.shadowP95Ms));
  }

  // ---- history and charts ----

  /** @param {string[]} names @param {Loose} analysis @param {number} now */
  function record(names, analysis, now) {
    names.forEach(function (v) {
      var a = obj(analysis[v]);
      if (!a) return;
      var kind = num(a.requestsTotal) !== null ? 'total' : 'window';
      var n = kind === 'total' ? num(a.requestsTotal) : num(a.requests);
      var rate = null;
      var p = prev[v];
      if (n !== null && p && p.kind === kind && now > p.t) {
        var d = n - p.n;
        // A total that falls was reset (a restart); a window that falls lost old requests: no arrivals seen.
        rate = d < 0 ? (kind === 'total' ? null : 0) : d / ((now - p.t) / 1000);
      }
      if (n !== null) prev[v] = { t: now, n: n, kind: kind };
      (hist[v] = hist[v] || []).push({ t: now, rate: rate, err: num(a.errorRate), p95: num(a.p95Ms) });
    });
    Object.keys(hist).forEach(function (v) {
      var h = hist[v] || [];
      while (h.length && /** @type {Point} */ (h[0]).t < now - WINDOW_MS) h.shift();
      if (!h.length) delete hist[v];
    });
  }

  /** @param {number} x @param {number} floor */
  function niceMax(x, floor) {
    var m = Math.max(x, floor);
    var p = Math.pow(10, Math.floor(Math.log10(m)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      var step = /** @type {number} */ (steps[i]);
      if (step * p >= m) return step * p;
    }
    return 10 * p;
  }

  /** @param {number} now */
  function renderCharts(now) {
    var W = 360, H = 110, PAD = 14;
    CHARTS.forEach(function (c) {
      var names = Object.keys(hist);
      var max = 0;
      names.forEach(function (v) {
        (hist[v] || []).forEach(function (pt) {
          var y = pt[c.key];
          if (y !== null && y > max) max = y;
        });
      });
      max = niceMax(max, c.floor);
      var svg = $('chart-' + c.key);
      var kids = [
        el('svg:line', { x1: 0, x2: W, y1: PAD, y2: PAD, stroke: '#d8dee4', 'stroke-dasharray': '3 3' }),
        el('svg:line', { x1: 0, x2: W, y1: (H + PAD) / 2, y2: (H + PAD) / 2, stroke: '#eef1f4' }),
        el('svg:text', { x: 4, y: PAD - 3, text: c.fmt(max) }),
        el('svg:text', { x: 4, y: H - 3, text: 'last 120 s' })
      ];
      names.forEach(function (v) {
        var pts = (hist[v] || []).filter(function (pt) { return pt[c.key] !== null; }).map(function (pt) {
          var x = ((pt.t - (now - WINDOW_MS)) / WINDOW_MS) * W;
          var y = H - (/** @type {number} */ (pt[c.key]) / max) * (H - PAD);
          return x.toFixed(1) + ',' + y.toFixed(1);
        });
        if (pts.length) kids.push(el('svg:polyline', { points: pts.join(' '), fill: 'none', stroke: colour(v), 'stroke-width': 2,
          'stroke-linejoin': 'round', 'data-testid': 'line-' + (c.testid || c.key) + '-' + v }));
      });
      svg.replaceChildren.apply(svg, kids);
      var legend = $('legend-' + c.key);
      legend.replaceChildren.apply(legend, names.map(function (v) {
        var h = hist[v] || [], last = null;
        for (var i = h.length - 1; i >= 0 && last === null; i--) last = /** @type {Point} */ (h[i])[c.key];
        return el('span', {}, [el('span', { class: 'swatch', bg: colour(v) }), el('span', { text: v }),
          el('b', { 'data-testid': (c.testid || c.key) + '-' + v, text: c.fmt(last) })]);
      }));
    });
  }

  tick();
})();
