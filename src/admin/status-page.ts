import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'

/**
 * The operator's status page, served by the admin listener at `GET /`.
 *
 * One self-contained document: inline CSS and JS (./status-page/app.js),
 * no framework, nothing fetched from elsewhere, so it works on an
 * air-gapped host and needs no build step. It polls `GET /v1/state` once a second and keeps the last
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

/** The page's script, its own file so that lint and the type checker see it; inlined as it is. */
const SCRIPT = readFileSync(new URL('./status-page/app.js', import.meta.url), 'utf8')

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
