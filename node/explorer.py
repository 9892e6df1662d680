"""The block explorer: one self-contained page served at GET / by node/api/routes_health.py.

Plain JavaScript, inline SVG and CSS, no external assets (nodes may run offline). It polls the
node's own API every two seconds: /status (head, round, latency, committee, peers), /commits
(recent commits), /subnets with each /subnets/{n}/metagraph and /subnets/{n}/weights (table and
weight heat map), /emission (paid emission per epoch, charted over height), /concentration (Nakamoto
coefficient and top-5 shares of the committee, each subnet and the network; spec/economics.md §5) and
/proposals (governance). Every value that
comes from the chain is inserted as text, never as HTML.
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tensornet explorer</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
header{background:#1d232b;color:#fff;padding:10px 18px;display:flex;gap:22px;flex-wrap:wrap;align-items:baseline}
header h1{font-size:18px;margin:0 12px 0 0}
header .kv b{color:#9fd3ff;font-weight:600}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:14px;padding:14px}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:10px 14px;overflow:auto}
section.wide{grid-column:1/-1}
h2{font-size:15px;margin:4px 0 8px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:right;padding:2px 8px;border-bottom:1px solid #eef0f3;white-space:nowrap}
th:first-child,td:first-child,td.l,th.l{text-align:left}
code{font:12px ui-monospace,monospace}
table.metagraph{width:auto}
.subnet{border-top:1px solid #dde1e6;margin-top:10px;padding-top:8px}
.subnet-body{display:flex;gap:18px;flex-wrap:wrap;align-items:flex-start}
.err{color:#b00020}
.muted{color:#6b7480}
svg text{font:11px system-ui,sans-serif;fill:#394350}
</style></head>
<body>
<header><h1>tensornet</h1>
<span class="kv">chain <b id="chain-id">…</b></span>
<span class="kv">height <b id="head-height">…</b></span>
<span class="kv">round <b id="head-round">…</b></span>
<span class="kv">commit p50 <b id="head-latency">…</b></span>
<span class="kv">peers <b id="head-peers">…</b></span>
<span class="kv">mempool <b id="head-mempool">…</b></span>
<span class="kv">state root <b id="head-root">…</b></span>
<span class="kv err" id="error"></span>
</header>
<main>
<section><h2>Recent commits</h2>
<table id="commits"><thead><tr><th>height</th><th class="l">digest</th><th>leader round</th><th>leader</th>
<th>blocks</th><th class="l">time</th></tr></thead><tbody></tbody></table></section>
<section><h2>Committee and peers</h2>
<p class="muted" id="node-info"></p>
<table id="committee"><thead><tr><th>index</th><th class="l">validator</th><th class="l">this node</th></tr></thead>
<tbody></tbody></table></section>
<section><h2>Concentration</h2>
<p class="muted">entities are hotkey owner coldkeys; Nakamoto = fewest entities reaching 1/3 of the committee
stake (halts commits) or a majority of a subnet's validator stake</p>
<table id="concentration"><thead><tr><th class="l">scope</th><th>entities</th><th>nakamoto</th>
<th>top-5 stake</th><th>top-5 emission</th></tr></thead><tbody></tbody></table></section>
<section><h2>Governance</h2>
<table id="proposals"><thead><tr><th>id</th><th class="l">parameter</th><th>value</th><th class="l">status</th>
<th>yes</th><th>no</th><th>abstain</th><th>voting ends</th><th>executes</th></tr></thead><tbody></tbody></table>
<p class="muted" id="proposals-note"></p></section>
<section class="wide"><h2>Emission per epoch</h2>
<svg id="emission-chart" width="900" height="220" role="img" aria-label="emission per epoch over height"></svg>
<p class="muted" id="emission-note"></p></section>
<section class="wide"><h2>Subnets</h2><div id="subnets"><p class="muted">loading…</p></div></section>
</main>
<script>
"use strict";
const SVGNS = "http://www.w3.org/2000/svg";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
const U16 = 65535, UNIT = 1e9;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = String(text);
  return e;
}
function setText(id, v) { document.getElementById(id).textContent = v; }
function short(h) { return h ? String(h).slice(0, 10) + "…" : "-"; }
function tok(units) { return (Number(units) / UNIT).toFixed(4); }
function frac(x) { return (Number(x) / U16).toFixed(4); }
async function get(path) {
  const r = await fetch(path, {cache: "no-store"});
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}
function fill(tbody, rows) {
  tbody.replaceChildren(...rows.map(cells => el("tr", {}, ...cells.map(
    c => el("td", {class: typeof c === "number" ? "" : "l"}, c)))));
}

function renderStatus(s) {
  setText("chain-id", s.chain_id);
  setText("head-height", s.height);
  setText("head-round", s.round);
  setText("head-latency", s.commit_latency_ms_p50 == null ? "-" : Math.round(s.commit_latency_ms_p50) + " ms");
  setText("head-peers", s.peers);
  setText("head-mempool", s.mempool);
  setText("head-root", short(s.state_root));
  setText("node-info", "peer " + (s.peer_id || "-") + "; " + s.peers + " chain peers; sync distance " +
    s.sync_distance + " rounds; " + (s.validator ? "validator #" + s.validator_index : "full node"));
  fill(document.querySelector("#committee tbody"), (s.committee || []).map((a, i) =>
    [i, el("code", {}, a), i === s.validator_index ? "yes" : ""]));
}

function renderCommits(list) {
  const rows = list.slice().reverse().map(c => [c.height, el("code", {}, short(c.digest)), c.leader.round,
    c.leader.author, c.blocks, new Date(c.timestamp_ms).toISOString().slice(11, 23)]);
  fill(document.querySelector("#commits tbody"), rows);
}

function heatmap(netuid, weights) {
  const n = weights.length;
  const rows = weights.filter(w => w.weights.length > 0);
  const cell = Math.max(8, Math.min(28, Math.floor(360 / Math.max(1, n))));
  const left = 40, top = 28;
  const g = svg("svg", {class: "heatmap", "data-netuid": netuid, width: Math.max(280, left + n * cell + 10),
    height: top + Math.max(1, rows.length) * cell + 10});
  g.append(svg("text", {x: 0, y: 12}, "weights (row: validator uid, column: uid)"));
  for (let j = 0; j < n; j++) g.append(svg("text", {x: left + j * cell + cell / 2 - 3, y: top - 3}, j));
  if (rows.length === 0) {
    g.append(svg("text", {x: left, y: top + 14, class: "empty"}, "no weights set yet"));
    return g;
  }
  rows.forEach((w, i) => {
    g.append(svg("text", {x: 0, y: top + i * cell + cell * 0.7}, w.uid));
    const byUid = new Map(w.weights.map(([u, v]) => [u, v]));
    for (let j = 0; j < n; j++) {
      const v = byUid.get(j) || 0;
      const a = v / U16;
      const r = svg("rect", {class: "cell", x: left + j * cell, y: top + i * cell, width: cell - 1,
        height: cell - 1, fill: `rgba(31,119,180,${(0.08 + 0.92 * a).toFixed(3)})`,
        "data-row": w.uid, "data-col": j, "data-weight": v});
      r.append(svg("title", {}, `uid ${w.uid} -> uid ${j}: ${(a * 100).toFixed(1)}%`));
      g.append(r);
    }
  });
  return g;
}

function pct(x) { return (100 * Number(x)).toFixed(1) + "%"; }

function renderConcentration(c) {
  const k = c.committee;
  const rows = [["committee", k.entities, k.nakamoto, pct(k.top5_stake_share), pct(c.top5_emission_share)]];
  for (const [n, s] of Object.entries(c.subnets)) {
    rows.push([`subnet ${n}`, s.validator_entities, s.nakamoto, pct(s.top5_stake_share), pct(s.top5_emission_share)]);
  }
  const tb = document.querySelector("#concentration tbody");
  fill(tb, rows);
  tb.querySelectorAll("tr").forEach((tr, i) => {
    tr.setAttribute("class", "conc-row");
    tr.setAttribute("data-scope", rows[i][0]);
    tr.setAttribute("data-nakamoto", rows[i][2]);
  });
}

function renderProposals(list) {
  fill(document.querySelector("#proposals tbody"), list.map(p => [p.id, p.parameter, p.value, p.status,
    tok(p.yes), tok(p.no), tok(p.abstain), p.voting_ends, p.executes_at]));
  setText("proposals-note", list.length ? "" : "no proposals yet");
}

function renderSubnet(sn, mg, weights) {
  const head = el("h3", {}, `subnet ${sn.netuid}: ${sn.name}`);
  const c = sn.concentration;
  const info = el("p", {class: "muted"}, `${sn.neurons} neurons, tempo ${sn.tempo}, registration burn ` +
    `${tok(sn.burn)}, owner ${short(sn.owner)}; score ${tok(sn.score)}, ` +
    (sn.immune ? `immune until height ${sn.immune_until}` : "not immune") +
    `; nakamoto ${c.nakamoto}, top-5 stake ${pct(c.top5_stake_share)}, top-5 emission ${pct(c.top5_emission_share)}`);
  const t = el("table", {class: "metagraph"}, el("thead", {}, el("tr", {}, ...["uid", "hotkey", "stake",
    "incentive", "dividends", "emission", "permit"].map(h => el("th", {class: h === "hotkey" ? "l" : ""}, h)))));
  const tb = el("tbody");
  fill(tb, mg.map(r => [r.uid, el("code", {}, short(r.hotkey)), tok(r.stake), frac(r.incentive),
    frac(r.dividends), tok(r.emission), r.validator_permit ? "yes" : ""]));
  t.append(tb);
  return el("div", {class: "subnet", "data-netuid": sn.netuid}, head, info,
    el("div", {class: "subnet-body"}, t, heatmap(sn.netuid, weights)));
}

function renderEmission(e) {
  const chart = document.getElementById("emission-chart");
  const W = +chart.getAttribute("width"), H = +chart.getAttribute("height");
  const L = 70, R = 140, T = 12, B = 30;
  chart.replaceChildren();
  const points = e.epochs;
  setText("emission-note", points.length ? `${points.length} epochs since this node started; issued ` +
    `${tok(e.issued)} tokens at height ${e.height}` : "no epoch has paid emission since this node started");
  if (!points.length) return;
  const x0 = Math.min(...points.map(p => p.height)), x1 = Math.max(...points.map(p => p.height), x0 + 1);
  const y1 = Math.max(...points.map(p => p.emission), 1);
  const X = h => L + (W - L - R) * (h - x0) / (x1 - x0), Y = v => H - B - (H - T - B) * v / y1;
  chart.append(svg("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#888"}));
  chart.append(svg("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#888"}));
  chart.append(svg("text", {x: L, y: H - 8}, "height " + x0));
  chart.append(svg("text", {x: W - R - 60, y: H - 8}, "height " + x1));
  chart.append(svg("text", {x: 2, y: T + 10}, tok(y1)));
  chart.append(svg("text", {x: 2, y: H - B}, "0"));
  const nets = [...new Set(points.map(p => p.netuid))].sort((a, b) => a - b);
  nets.forEach((n, i) => {
    const ps = points.filter(p => p.netuid === n);
    const color = COLORS[i % COLORS.length];
    const d = ps.map((p, k) => (k ? "L" : "M") + X(p.height).toFixed(1) + " " + Y(p.emission).toFixed(1)).join(" ");
    chart.append(svg("path", {class: "series", "data-netuid": n, d, fill: "none", stroke: color, "stroke-width": 2}));
    for (const p of ps) {
      const c = svg("circle", {cx: X(p.height), cy: Y(p.emission), r: 3, fill: color});
      c.append(svg("title", {}, `subnet ${n} epoch ${p.epoch} at height ${p.height}: ${tok(p.emission)} tokens`));
      chart.append(c);
    }
    chart.append(svg("text", {x: W - R + 10, y: T + 14 + 16 * i, style: "fill:" + color}, `subnet ${n}`));
  });
}

async function tick() {
  try {
    const [s, commits, subnets, emission, conc, proposals] = await Promise.all([get("/status"), get("/commits"),
      get("/subnets"), get("/emission"), get("/concentration"), get("/proposals")]);
    renderStatus(s);
    renderCommits(commits);
    renderEmission(emission);
    renderConcentration(conc);
    renderProposals(proposals);
    const parts = await Promise.all(subnets.map(async sn => renderSubnet(sn,
      await get(`/subnets/${sn.netuid}/metagraph`), await get(`/subnets/${sn.netuid}/weights`))));
    const box = document.getElementById("subnets");
    box.replaceChildren(...(parts.length ? parts : [el("p", {class: "muted"}, "no subnets")]));
    setText("error", "");
    document.body.setAttribute("data-loaded", "1");
  } catch (err) {
    setText("error", "API error: " + err.message);
  }
}
tick();
setInterval(tick, 2000);
</script>
</body></html>
"""
