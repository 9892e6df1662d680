"""The node's HTTP API (starlette, served by hypercorn's Trio worker); spec/api.md lists the routes and limits.

Hypercorn runs in a thread of its own with its own Trio loop (`app.serve_api`): HTTP parsing, body
reading, size caps and rate limits never run on the consensus loop. Each handler hops to the node's
loop (`guard.Guard`, a few at a time), so it reads the chain state between commits, never in the middle of one.
Errors are one-line JSON `{"error": ..., "rule": ...}`: 400 for bad parameters, 404 for unknown items,
413 for bodies over a route's cap, 429 when a client's POST budget is empty, and 500 (logged as one
line, rate-limited) only for our own bugs.

A package, not one module, because the API is four concerns that change for different reasons, and one
file held them all in a single 289-line function:
- `view`: what the API may see of a node (`NodeView`, a Protocol), so it never imports the daemon;
- `guard`: the ASGI layer before any handler (POST budgets, body caps, the hop to the node's loop, 500s);
- `params`: parameter parsing and JSON errors, shared by every route;
- `routes_*`: module-level handlers by area (health, chain, state, subnets, txs), each `(ApiContext, Request)`;
- `app`: `build_app` (the route table) and `serve_api` (the server thread); it only wires the rest.
Imports go one way: guard and params import no other API module, view imports guard, the routes import view
and params, and app imports them all; only the daemon (and tests) import app. The Prometheus series live in
node/metrics.py, which the daemon writes too.
"""
