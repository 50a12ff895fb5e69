import { createHash } from 'node:crypto'

/**
 * The operator's status page, served by the admin listener at `GET /`.
 *
 * One self-contained document: inline CSS and JS, no framework, nothing
 * fetched from elsewhere, so it works on an air-gapped host and needs no
 * build step. It polls `GET /v1/state` once a second and keeps the last
 * 120 s of figures in memory for the charts. The admin token lives in
 * sessionStorage (gone when the tab closes); the page first tries without
 * one, because a loopback admin API may run without a token, and asks only
 * when the API answers 401.
 *
 * The request rate comes from a monotonic `analysis.<v>.requestsTotal` when
 * the API sends one; otherwise from the change of `analysis.<v>.requests`
 * between polls, which undercounts once that sliding window is full.
 *
 * Elements carry `data-testid` attributes (weight-<v>, weight-bar-<v>,
 * instance rows with data-version/data-url, rollout-status, rate-<v>, ...)
 * for the browser tests; they are part of the page's interface.
 */

const STYLE = `
:root { --fg: #1f2328; --muted: #636c76; --line: #d8dee4; --bg: #f6f8fa; --card: #fff;
  --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { display: flex; align-items: center; gap: 16px; padding: 10px 24px; background: var(--card);
  border-bottom: 1px solid var(--line); }
header h1 { font-size: 18px; margin: 0; letter-spacing: .02em; }
header .spacer { flex: 1; }
header .meta { color: var(--muted); font-size: 12px; }
.conn { font-size: 12px; padding: 2px 8px; border-radius: 10px; background: #eaeef2; }
.conn.live { background: #dafbe1; color: var(--ok); }
.conn.error { background: #ffebe9; color: var(--bad); }
button { font: inherit; padding: 4px 10px; border: 1px solid var(--line); border-radius: 6px; background: var(--card);
  cursor: pointer; }
button:hover { border-color: var(--muted); }
main { max-width: 1240px; margin: 0 auto; padding: 16px 24px 40px; display: grid; gap: 16px;
  grid-template-columns: 3fr 2fr; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; min-width: 0; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); margin: 0 0 10px; }
.version { display: grid; grid-template-columns: 120px 1fr 56px 90px; align-items: center; gap: 10px; padding: 4px 0; }
.version .name { font-weight: 600; display: flex; align-items: center; gap: 6px; overflow: hidden; text-overflow: ellipsis; }
.swatch { width: 10px; height: 10px; border-radius: 2px; flex: none; }
.bar { height: 14px; background: #eaeef2; border-radius: 7px; overflow: hidden; }
.bar .fill { height: 100%; border-radius: 7px; transition: width .4s ease; }
.weight { text-align: right; font-variant-numeric: tabular-nums; font-weight: 600; }
.weight::after { content: "%"; font-weight: 400; color: var(--muted); }
.usable { color: var(--muted); font-size: 12px; }
dl { display: grid; grid-template-columns: 110px 1fr; gap: 4px 12px; margin: 0; }
dl > div { display: contents; }
dl > div[hidden] { display: none; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
.status { font-weight: 600; }
.status.progressing { color: var(--accent); } .status.paused { color: var(--warn); }
.status.promoted { color: var(--ok); } .status.rolled_back { color: var(--bad); }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th { text-align: left; color: var(--muted); font-weight: 500; font-size: 12px; border-bottom: 1px solid var(--line); padding: 4px 8px; }
td { padding: 5px 8px; border-bottom: 1px solid #eef1f4; }
td.num, th.num { text-align: right; }
.pill { display: inline-block; padding: 0 8px; border-radius: 9px; font-size: 12px; background: #eaeef2; }
.pill.ok { background: #dafbe1; color: var(--ok); } .pill.bad { background: #ffebe9; color: var(--bad); }
.pill.warn { background: #fff8c5; color: var(--warn); }
.charts { display: grid; grid-template-columns: repeat(3, 1fr); gap: 16px; }
.chart h3 { font-size: 13px; margin: 0 0 4px; font-weight: 600; }
.chart svg { width: 100%; height: auto; display: block; background: #fbfcfd; border: 1px solid #eef1f4; border-radius: 4px; }
.chart svg text { font-size: 10px; fill: var(--muted); }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; margin-top: 6px; font-size: 12px; font-variant-numeric: tabular-nums; }
.legend span { display: inline-flex; align-items: center; gap: 5px; }
.empty { color: var(--muted); }
.mirror { display: flex; gap: 32px; flex-wrap: wrap; }
.mirror div b { display: block; font-size: 20px; font-variant-numeric: tabular-nums; }
.mirror div span { color: var(--muted); font-size: 12px; }
#login { position: fixed; inset: 0; background: rgba(31, 35, 40, .35); display: flex; align-items: center; justify-content: center; }
#login[hidden] { display: none; }
#login form { background: var(--card); padding: 20px 24px; border-radius: 8px; width: 360px; box-shadow: 0 8px 24px rgba(0,0,0,.15); }
#login h2 { color: var(--fg); font-size: 16px; text-transform: none; letter-spacing: 0; }
#login input { width: 100%; font: inherit; padding: 6px 8px; margin: 8px 0 12px; border: 1px solid var(--line); border-radius: 6px; }
`

// Plain ES2020 without template literals, so that it can sit inside this TypeScript template literal.
const SCRIPT = `
(function () {
  'use strict';
  var WINDOW_MS = 120000, POLL_MS = 1000, TIMEOUT_MS = 3000;
  var TOKEN_KEY = 'sluice.adminToken';
  var PALETTE = ['#0969da', '#1a7f37', '#bc4c00', '#8250df', '#cf222e', '#1b7c83', '#9a6700', '#bf3989'];
  var SVG = 'http://www.w3.org/2000/svg';
  var CHARTS = [
    { key: 'rate', title: 'Requests / s', floor: 1, fmt: fmtRate },
    { key: 'err', title: 'Error rate', floor: 0.01, fmt: fmtPct, testid: 'error-rate' },
    { key: 'p95', title: 'p95 latency', floor: 10, fmt: fmtMs }
  ];

  var token = sessionStorage.getItem(TOKEN_KEY) || '';
  var timer = 0, ticks = 0, stopped = false;
  var colours = {}, nColours = 0;
  var hist = {};   // version -> [{ t, rate, err, p95 }], the last WINDOW_MS
  var prev = {};   // version -> { t, n, kind } for the request rate

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var e = tag.indexOf('svg:') === 0 ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    if (attrs) for (var k in attrs) {
      var v = attrs[k];
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = String(v);
      else if (k === 'class') e.setAttribute('class', v);
      else if (k === 'width%') e.style.width = v + '%';
      else if (k === 'bg') e.style.background = v;
      else e.setAttribute(k, String(v));
    }
    if (children) for (var i = 0; i < children.length; i++) if (children[i]) e.appendChild(children[i]);
    return e;
  }

  function obj(v) { return v && typeof v === 'object' && !Array.isArray(v) ? v : null; }
  function num(v) { return typeof v === 'number' && isFinite(v) ? v : null; }
  function colour(v) {
    if (!colours[v]) colours[v] = PALETTE[nColours++ % PALETTE.length];
    return colours[v];
  }
  function fmtRate(n) { return n === null ? '-' : n < 10 ? n.toFixed(1) : String(Math.round(n)); }
  function fmtPct(n) { return n === null ? '-' : (n * 100).toFixed(2) + '%'; }
  function fmtMs(n) { return n === null ? '-' : n.toFixed(1) + ' ms'; }
  function fmtCount(n) { return n === null ? '-' : String(n); }

  function setConn(kind, text) {
    var c = $('conn');
    c.className = 'conn ' + kind;
    c.textContent = text;
  }

  // ---- token ----

  function askToken(message) {
    stopped = true;
    clearTimeout(timer);
    $('login-msg').textContent = message;
    $('login').hidden = false;
    setConn('error', 'token required');
    $('token').focus();
  }

  $('token-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    token = $('token').value.trim();
    $('token').value = '';
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
      .then(function (state) {
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

  function render(s, now) {
    var weights = obj(s.weights) || {};
    var versions = obj(s.versions) || {};
    var analysis = obj(s.analysis) || {};
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

  function instancesOf(spec) {
    var list = obj(spec) && spec.instances;
    return Array.isArray(list) ? list.filter(obj) : [];
  }

  function usable(i) { return i.healthy === true && i.draining !== true && i.ejected !== true; }

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

  function pill(on, yes, no, bad) {
    if (on === undefined || on === null) return el('span', { text: '-' });
    return el('span', { class: 'pill ' + (on ? (bad ? 'bad' : 'warn') : ''), text: on ? yes : no });
  }

  function ejectedText(i) {
    var until = typeof i.ejectedUntil === 'string' ? new Date(i.ejectedUntil) : null;
    return until && isFinite(until.getTime()) ? 'ejected until ' + until.toLocaleTimeString() : 'ejected';
  }

  function renderInstances(versions) {
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

  function renderRollout(r, now) {
    var status = r && typeof r.status === 'string' ? r.status : 'none';
    $('rollout-status').textContent = status;
    $('rollout-status').className = 'status ' + status;
    var active = r && r.canary !== undefined && r.canary !== null;
    $('rollout-versions').textContent = active ? r.canary + ' (baseline ' + (r.baseline || '-') + ')' : '-';
    var step = r ? num(r.step) : null;
    var text = '-';
    if (r && r.phase === 'mirror') text = 'mirror phase (before the first step)';
    else if (step !== null && step >= 0) {
      text = String(step);
      if (Array.isArray(r.steps)) {
        var s = obj(r.steps[step]);
        text += ' (' + (step + 1) + ' of ' + r.steps.length + (s && num(s.weight) !== null ? ', canary ' + s.weight + '%' : '') + ')';
      }
    }
    $('rollout-step').textContent = text;
    var hold = r ? holdLeft(r, now) : null;
    $('rollout-hold-row').hidden = hold === null;
    $('rollout-hold').textContent = hold === null ? '' : Math.ceil(hold / 1000) + ' s';
    $('rollout-reason').textContent = r && r.reason ? String(r.reason) : '-';
    var awaiting = r && typeof r.awaiting === 'string' ? r.awaiting : null;
    $('rollout-awaiting-row').hidden = awaiting === null;
    $('rollout-awaiting').textContent = awaiting === null ? '' : 'step ' + step + ' awaits ' + (awaiting === 'approval' ? 'an approval' : awaiting);
    $('rollout-approve').hidden = awaiting !== 'approval';
  }

  // An approval is the one change this page makes: the step waits for a person, who is looking at it.
  $('rollout-approve').addEventListener('click', function () {
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

  function renderMirror(m) {
    $('mirror-panel').hidden = !m;
    if (!m) return;
    $('mirror-version').textContent = (m.version || '-') + (num(m.percent) !== null ? ' (' + m.percent + '%)' : '');
    $('mirror-copied').textContent = fmtCount(num(m.copied));
    $('mirror-mismatches').textContent = fmtCount(num(m.mismatches));
    $('mirror-p95').textContent = fmtMs(num(m.shadowP95Ms));
  }

  // ---- history and charts ----

  function record(names, analysis, now) {
    names.forEach(function (v) {
      var a = obj(analysis[v]);
      if (!a) return;
      var kind = num(a.requestsTotal) !== null ? 'total' : 'window';
      var n = kind === 'total' ? a.requestsTotal : num(a.requests);
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
      var h = hist[v];
      while (h.length && h[0].t < now - WINDOW_MS) h.shift();
      if (!h.length) delete hist[v];
    });
  }

  function niceMax(x, floor) {
    var m = Math.max(x, floor);
    var p = Math.pow(10, Math.floor(Math.log10(m)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= m) return steps[i] * p;
    return 10 * p;
  }

  function renderCharts(now) {
    var W = 360, H = 110, PAD = 14;
    CHARTS.forEach(function (c) {
      var names = Object.keys(hist);
      var max = 0;
      names.forEach(function (v) { hist[v].forEach(function (pt) { if (pt[c.key] !== null && pt[c.key] > max) max = pt[c.key]; }); });
      max = niceMax(max, c.floor);
      var svg = $('chart-' + c.key);
      var kids = [
        el('svg:line', { x1: 0, x2: W, y1: PAD, y2: PAD, stroke: '#d8dee4', 'stroke-dasharray': '3 3' }),
        el('svg:line', { x1: 0, x2: W, y1: (H + PAD) / 2, y2: (H + PAD) / 2, stroke: '#eef1f4' }),
        el('svg:text', { x: 4, y: PAD - 3, text: c.fmt(max) }),
        el('svg:text', { x: 4, y: H - 3, text: 'last 120 s' })
      ];
      names.forEach(function (v) {
        var pts = hist[v].filter(function (pt) { return pt[c.key] !== null; }).map(function (pt) {
          var x = ((pt.t - (now - WINDOW_MS)) / WINDOW_MS) * W;
          var y = H - (pt[c.key] / max) * (H - PAD);
          return x.toFixed(1) + ',' + y.toFixed(1);
        });
        if (pts.length) kids.push(el('svg:polyline', { points: pts.join(' '), fill: 'none', stroke: colour(v), 'stroke-width': 2,
          'stroke-linejoin': 'round', 'data-testid': 'line-' + (c.testid || c.key) + '-' + v }));
      });
      svg.replaceChildren.apply(svg, kids);
      var legend = $('legend-' + c.key);
      legend.replaceChildren.apply(legend, names.map(function (v) {
        var h = hist[v], last = null;
        for (var i = h.length - 1; i >= 0 && last === null; i--) last = h[i][c.key];
        return el('span', {}, [el('span', { class: 'swatch', bg: colour(v) }), el('span', { text: v }),
          el('b', { 'data-testid': (c.testid || c.key) + '-' + v, text: c.fmt(last) })]);
      }));
    });
  }

  tick();
})();
`

const BODY = `
<header>
  <h1>sluice</h1>
  <span id="conn" class="conn" data-testid="conn-status">connecting…</span>
  <span class="spacer"></span>
  <span id="store" class="meta" data-testid="store"></span>
  <span id="updated" class="meta" data-testid="updated"></span>
  <button id="forget" type="button" data-testid="token-change">change token</button>
</header>
<main>
  <section>
    <h2>Versions and weights</h2>
    <div id="versions" data-testid="versions"><p class="empty">waiting for the first answer…</p></div>
  </section>
  <section data-testid="rollout">
    <h2>Rollout</h2>
    <dl>
      <dt>status</dt><dd><span id="rollout-status" class="status" data-testid="rollout-status">-</span></dd>
      <dt>canary</dt><dd id="rollout-versions" data-testid="rollout-versions">-</dd>
      <dt>step</dt><dd id="rollout-step" data-testid="rollout-step">-</dd>
      <div id="rollout-hold-row" hidden><dt>hold left</dt><dd id="rollout-hold" data-testid="rollout-hold"></dd></div>
      <div id="rollout-awaiting-row" hidden><dt>awaiting</dt><dd><span id="rollout-awaiting" data-testid="rollout-awaiting"></span>
        <button id="rollout-approve" type="button" data-testid="rollout-approve" hidden>approve</button>
        <span id="rollout-approve-msg" data-testid="rollout-approve-msg"></span></dd></div>
      <dt>reason</dt><dd id="rollout-reason" data-testid="rollout-reason">-</dd>
    </dl>
  </section>
  <section class="wide">
    <h2>Instances</h2>
    <table data-testid="instances">
      <thead><tr><th>version</th><th>url</th><th>source</th><th>health</th><th>draining</th><th>ejected</th>
        <th class="num">in flight</th><th class="num">websockets</th></tr></thead>
      <tbody id="instances-body"></tbody>
    </table>
  </section>
  <section class="wide">
    <h2>Traffic, last 120 s</h2>
    <div class="charts">
      <div class="chart"><h3>Requests / s</h3><svg id="chart-rate" data-testid="chart-rate" viewBox="0 0 360 110"></svg><div id="legend-rate" class="legend"></div></div>
      <div class="chart"><h3>Error rate</h3><svg id="chart-err" data-testid="chart-error-rate" viewBox="0 0 360 110"></svg><div id="legend-err" class="legend"></div></div>
      <div class="chart"><h3>p95 latency</h3><svg id="chart-p95" data-testid="chart-p95" viewBox="0 0 360 110"></svg><div id="legend-p95" class="legend"></div></div>
    </div>
  </section>
  <section id="mirror-panel" class="wide" data-testid="mirror-panel" hidden>
    <h2>Mirror</h2>
    <div class="mirror">
      <div><b id="mirror-version" data-testid="mirror-version">-</b><span>shadow version</span></div>
      <div><b id="mirror-copied" data-testid="mirror-copied">-</b><span>copied</span></div>
      <div><b id="mirror-mismatches" data-testid="mirror-mismatches">-</b><span>mismatches</span></div>
      <div><b id="mirror-p95" data-testid="mirror-p95">-</b><span>shadow p95</span></div>
    </div>
  </section>
</main>
<div id="login" data-testid="token-dialog" hidden>
  <form id="token-form" data-testid="token-form">
    <h2>Admin token</h2>
    <p id="login-msg" data-testid="token-message"></p>
    <input id="token" data-testid="token-input" type="password" autocomplete="off" aria-label="admin token">
    <button type="submit" data-testid="token-submit">Connect</button>
  </form>
</div>
`

export const STATUS_PAGE_HTML: string =
  '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n' +
  '<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>sluice status</title>\n' +
  `<style>${STYLE}</style>\n</head>\n<body>${BODY}<script>${SCRIPT}</script>\n</body>\n</html>\n`

function sha256(s: string): string {
  return `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`
}

/**
 * A Content-Security-Policy for the response that serves the page: only its
 * own inline script and style run, and it may only talk to its own origin.
 */
export const STATUS_PAGE_CSP: string = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')
