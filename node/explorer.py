"""Placeholder until the explorer page lands (issue 7): a minimal live status page."""

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>tensornet</title></head>
<body><h1>tensornet node</h1><pre id="s">loading…</pre>
<script>
async function tick(){
  const r = await fetch('/status');
  document.getElementById('s').textContent = JSON.stringify(await r.json(), null, 2);
}
tick();setInterval(tick,1000);
</script></body></html>"""
