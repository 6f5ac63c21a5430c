"""The cluster-scaler HTTP API (seeds 000 and 001): list, inspect, scale and
restart Ray, Dask and Spark clusters through the scaling backends, for users
Kubernetes itself authenticates (TokenReview) or who hold an API key.

Why aiohttp: it is already installed (kopf is built on it), it is a
well-kept asyncio server with a test client, and the backends and `Kube` are
asyncio code; an ASGI framework would add a server (uvicorn) and a framework
for the same few routes.

Layers (each module says its rules):
- `app`: the edge. Routes parse the request, call `service`, and map errors
  to HTTP in one table; every answer is JSON with `Cache-Control: no-store`.
- `service`: one method per operation: which backend, who may, what to send.
- `auth`: credentials to an `Identity` (TokenReview, hashed API keys) and
  the admin decision (groups, SubjectAccessReview), with a bounded TTL cache.
- `reviews`: the TokenReview / SubjectAccessReview POSTs (through kr8s).
- `tiers`: hardware tiers from a ConfigMap to a `WorkerShape`.
- `views`: pure rules: the compatibility view, the head-restart status,
  the replica cap, timestamps.
- `openapi`: the OpenAPI 3.1 document of every route (`/openapi.json`).
- `main`: `dask-operator api`'s flags and wiring.
"""
