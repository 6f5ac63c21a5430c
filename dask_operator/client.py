"""Python client of the cluster-scaler HTTP API: seed 001's functions, on httpx.

Seed 001's functions keep their names, defaults and environment, read at each
call (`CLUSTER_SCALER_BASE_URL`, `DOMINO_API_PROXY`, `DOMINO_TOKEN`,
`DOMINO_API_KEY`, `DOMINO_RUN_ID`, `COMPUTE_NAMESPACE`); `ScalerClient` does
the same by explicit kind and name over an injectable `httpx.Client`.

Rules:
- Credentials, the first set: `DOMINO_API_PROXY` (`GET <proxy>/access-token`
  at every request) or `DOMINO_TOKEN` as `Authorization: Bearer`,
  `DOMINO_API_KEY` as `X-Domino-Api-Key`; one header only (the server refuses
  two); none: `no_credentials`, nothing sent. Messages never hold a credential.
- The run's cluster is `<kind without "clusters">-<DOMINO_RUN_ID>`;
  `COMPUTE_NAMESPACE`, when set, is sent as `?namespace=` (else the server's
  default, `domino-compute` in deploy/api).
- Every failure is a `ClientError` (`status`, None without an answer; `code`;
  `message`; `details`): the server's error body as is, else `no_credentials`,
  `config`, `auth_failed` (token proxy), `unreachable`, `request_timeout`,
  `http_error` (a non-JSON error) or `timeout` (a wait ran out).
- Scaled (`scaling_complete`): seed 001's `status.nodes` minus one head ==
  `spec.worker.replicas` (the server's compatibility view has both on every
  kind; seed 000's scale makes minReplicas the same number), and the view's
  uniform `status.scaler.complete` where given: head and desired workers Ready
  (Domino's `status.nodes` lists pods before they are Ready).
- Restarted: the status route's `restarted_and_ready` for the restart's `started_at`.
- Waits poll at seed 001's intervals (2 s, 3 s) until a deadline, then raise
  `timeout` with the last state seen; no answer or 502/503/504 meanwhile is
  retried, any other error ends the wait.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from .errors import ClientError

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://ddl-cluster-scaler-svc.domino-field.svc.cluster.local"
CONNECT_TIMEOUT_SECONDS = 5.0
REQUEST_TIMEOUT_SECONDS = 30.0  # a scale may wait on the cluster's API server and a head
TOKEN_TIMEOUT_SECONDS = 5.0
SCALE_POLL_SECONDS = 2.0
RESTART_POLL_SECONDS = 3.0
WAIT_TIMEOUT_SECONDS = 600.0
NEVER = "2099-12-31T00:00:00Z"  # seed 001's default `restarted_since`
Progress = Callable[[str], None]


def iso_utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def cluster_name_from_run_id(cluster_kind: str = "rayclusters", run_id: str | None = None) -> str:
    """`<kind without "clusters">-<run id>`; the run id defaults to `DOMINO_RUN_ID` (required)."""
    run_id = run_id if run_id is not None else os.environ.get("DOMINO_RUN_ID", "")
    if not run_id:
        raise ClientError("DOMINO_RUN_ID is not set: it names the run's cluster", code="config")
    return f"{cluster_kind.removesuffix('clusters')}-{run_id}"


def auth_headers(env: Mapping[str, str], http: httpx.Client | None = None) -> dict[str, str]:
    """The one credential header `env` gives; the token proxy is asked through `http`."""
    if proxy := env.get("DOMINO_API_PROXY"):
        url = proxy.rstrip("/") + "/access-token"
        try:
            r = (http or httpx).get(url, timeout=httpx.Timeout(TOKEN_TIMEOUT_SECONDS))
        except httpx.HTTPError as e:
            raise ClientError(f"no token from {url}: {type(e).__name__}", code="auth_failed") from e
        token = r.text.strip()
        if r.status_code != 200 or not token or any(c.isspace() for c in token):
            raise ClientError(f"no token from {url}: HTTP {r.status_code}", code="auth_failed")
        return {"Authorization": f"Bearer {token}"}
    if token := env.get("DOMINO_TOKEN", "").strip():
        return {"Authorization": f"Bearer {token}"}
    if key := env.get("DOMINO_API_KEY", "").strip():
        return {"X-Domino-Api-Key": key}
    raise ClientError("no credentials: set DOMINO_API_PROXY, DOMINO_TOKEN or DOMINO_API_KEY", code="no_credentials")


def _at(node: Any, *keys: str) -> Any:
    for key in keys:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def scale_counts(obj: Mapping) -> tuple[int | None, int | None, dict]:
    """(spec.worker.replicas, workers in status.nodes, status.scaler) of a cluster view."""
    replicas, nodes, scaler = (_at(obj, "spec", "worker", "replicas"), _at(obj, "status", "nodes"),
                               _at(obj, "status", "scaler"))
    return (replicas if isinstance(replicas, int) and not isinstance(replicas, bool) else None,
            len(nodes) - 1 if isinstance(nodes, list) and nodes else None,
            scaler if isinstance(scaler, dict) else {})


def scaling_complete(obj: Mapping) -> bool:
    """Seed 001's rule on a cluster view, and the uniform status's `complete` where given."""
    replicas, workers, scaler = scale_counts(obj)
    return replicas is not None and workers == replicas and scaler.get("complete", True) is True


def scale_progress(obj: Mapping) -> str:
    replicas, workers, scaler = scale_counts(obj)
    text = f"{'?' if workers is None else workers} of {'?' if replicas is None else replicas} workers"
    if "readyWorkers" in scaler:
        text += f", {scaler['readyWorkers']} Ready, head {'Ready' if scaler.get('headReady') else 'not Ready'}"
    return text


class ScalerClient:
    """The API's routes by kind and cluster name; `credentials()` gives each request's auth header."""

    def __init__(self, base_url: str = DEFAULT_BASE_URL, *, credentials: Callable[[], dict] | None = None,
                 namespace: str | None = None, http: httpx.Client | None = None,
                 timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        self.base_url, self.namespace, self.timeout = base_url.rstrip("/"), namespace or None, timeout
        self._own, self._http = http is None, http or httpx.Client()
        self._credentials = credentials or (lambda: auth_headers(os.environ, self._http))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, http: httpx.Client | None = None) -> ScalerClient:
        env = os.environ if env is None else env
        client = cls(env.get("CLUSTER_SCALER_BASE_URL") or DEFAULT_BASE_URL,
                     namespace=env.get("COMPUTE_NAMESPACE"), http=http)
        client._credentials = lambda: auth_headers(env, client._http)
        return client

    def close(self) -> None:
        if self._own:
            self._http.close()

    def __enter__(self) -> ScalerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, headers: dict, timeout: float | None = None, **kw) -> httpx.Response:
        limit = timeout or self.timeout
        try:
            return self._http.request(method, self.base_url + path, headers=headers, **kw,
                                      timeout=httpx.Timeout(limit, connect=min(CONNECT_TIMEOUT_SECONDS, limit)))
        except httpx.TimeoutException as e:
            raise ClientError(f"no answer from {self.base_url} within {limit:g}s", code="request_timeout",
                              request=f"{method} {path}") from e
        except httpx.HTTPError as e:
            raise ClientError(f"{self.base_url}: {type(e).__name__}: {e}", code="unreachable",
                              request=f"{method} {path}") from e

    def call(self, method: str, path: str, *, params: dict | None = None, json: object = None,
             timeout: float | None = None) -> Any:
        """One authenticated request: the answer's JSON (text if not JSON, None if empty), else ClientError."""
        headers = self._credentials()
        if self.namespace:
            params = {**(params or {}), "namespace": self.namespace}
        r = self._send(method, path, headers, timeout, params=params, json=json)
        if r.is_success:
            return _body(r)
        raise _error(r.status_code, _body(r), f"{method} {path}", list(headers.values()))

    def health(self) -> tuple[int, Any]:
        r = self._send("GET", "/healthz", {})
        return r.status_code, _body(r)

    def list(self, kind: str) -> dict:
        return self.call("GET", f"/ddl_cluster_scaler/list/{_q(kind)}")

    def get(self, kind: str, name: str, timeout: float | None = None) -> dict:
        return self.call("GET", f"/ddl_cluster_scaler/cluster/{_q(kind)}/{_q(name)}", timeout=timeout)

    def scale(self, kind: str, name: str, replicas: int, tier: str | None = None) -> Any:
        body: dict[str, Any] = {"replicas": replicas}
        if tier:  # seed 001 sends the tier under both names
            body.update(worker_hw_tier=tier, worker_hw_tier_id=tier)
        return self.call("PATCH", f"/ddl_cluster_scaler/scale/{_q(kind)}/{_q(name)}", json=body)

    def head_hw_tier(self, kind: str, name: str, tier: str) -> Any:
        return self.call("PATCH", f"/ddl_cluster_scaler/head-hw-tier/{_q(kind)}/{_q(name)}",
                         json={"head_hw_tier": tier, "head_hw_tier_id": tier})

    def restart_head(self, kind: str, name: str, started_at: str | None = None) -> Any:
        """Delete the head; the answer carries `started_at` (the server's, else the one sent)."""
        started_at = started_at or iso_utc_now()
        body = self.call("PATCH", f"/ddl_cluster_scaler/restart_head/{_q(kind)}/{_q(name)}",
                         params={"started_at": started_at})
        if isinstance(body, dict):
            body.setdefault("started_at", started_at)
        return body

    def restart_status(self, kind: str, name: str, started_at: str, timeout: float | None = None) -> Any:
        return self.call("GET", f"/ddl_cluster_scaler/restart_head_status/{_q(kind)}/{_q(name)}",
                         params={"started_at": started_at}, timeout=timeout)

    def wait_scaled(self, kind: str, name: str, timeout: float = WAIT_TIMEOUT_SECONDS,
                    poll: float = SCALE_POLL_SECONDS, progress: Progress | None = None) -> dict:
        """The cluster's view once `scaling_complete`; ClientError `timeout` after `timeout` seconds."""
        def check(limit: float) -> tuple[dict | None, str]:
            obj = self.get(kind, name, timeout=limit)
            return (obj if scaling_complete(obj) else None), scale_progress(obj)
        return self._poll(f"{kind}/{name} scaled", check, timeout, poll, progress)

    def wait_restarted(self, kind: str, name: str, started_at: str, timeout: float = WAIT_TIMEOUT_SECONDS,
                       poll: float = RESTART_POLL_SECONDS, progress: Progress | None = None) -> dict:
        """The status once `restarted_and_ready`; ClientError `timeout` after `timeout` seconds."""
        def check(limit: float) -> tuple[dict | None, str]:
            body = self.restart_status(kind, name, started_at, timeout=limit)
            state = body.get("status") if isinstance(body, dict) else None
            text = f"head {state}" + (f" ({body['pod']})" if body.get("pod") else "") if state else repr(body)
            return (body if state == "restarted_and_ready" else None), text
        return self._poll(f"{kind}/{name} head restarted since {started_at}", check, timeout, poll, progress)

    def _poll(self, what: str, check: Callable[[float], tuple[Any, str]], timeout: float, poll: float,
              progress: Progress | None) -> Any:
        deadline, last = time.monotonic() + timeout, "no answer yet"
        while True:
            try:  # no request outlives the deadline by much
                done, last = check(max(0.1, min(self.timeout, deadline - time.monotonic())))
            except ClientError as e:
                if not e.transient:
                    raise
                done, last = None, str(e)
            if done is not None:
                return done
            if progress is not None:
                progress(last)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ClientError(f"{what}: not done after {timeout:g}s; last seen: {last}", code="timeout")
            log.debug("%s: %s", what, last)
            time.sleep(min(poll, remaining))


def _q(segment: str) -> str:
    """One path segment, escaped: a name cannot reach another route."""
    return quote(segment, safe="")


def _body(r: httpx.Response) -> Any:
    if not r.content:
        return None
    try:
        return r.json()
    except ValueError:
        return r.text


def _error(status: int, body: Any, where: str, sent: list[str]) -> ClientError:
    """The ClientError of an error answer; the credential sent is redacted from whatever it says."""
    secrets = sorted((s for v in sent for s in (v.partition(" ")[2] or v,) if len(s) >= 4), key=len, reverse=True)

    def clean(text: object) -> str:
        text = str(text)
        for s in secrets:
            text = text.replace(s, "[redacted]")
        return text
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        details = body.get("details")
        return ClientError(clean(body.get("message", "")), status=status, code=body["error"],
                           details=clean(details) if details else None, request=where)
    return ClientError(clean(str(body or "")[:200]) or "no body", status=status, code="http_error", request=where)


# Seed 001's functions: the run's cluster of `cluster_kind`, configured by the environment.

def _run(kind: str, action: Callable[[ScalerClient, str], Any]) -> Any:
    name = cluster_name_from_run_id(kind)
    with ScalerClient.from_env() as c:
        return action(c, name)


def get_auth_headers() -> dict[str, str]:
    return auth_headers(os.environ)


def is_cluster_auto_scaler_healthy() -> tuple[int, Any]:
    with ScalerClient.from_env() as c:
        return c.health()


def list_clusters(cluster_kind: str = "rayclusters") -> dict:
    with ScalerClient.from_env() as c:
        return c.list(cluster_kind)


def get_cluster_status(cluster_kind: str = "rayclusters") -> dict:
    return _run(cluster_kind, lambda c, name: c.get(cluster_kind, name))


def scale_cluster(cluster_kind: str = "rayclusters", worker_hw_tier_name: str | None = "Small",
                  replicas: int = 1) -> Any:
    return _run(cluster_kind, lambda c, name: c.scale(cluster_kind, name, replicas, worker_hw_tier_name))


def is_scaling_complete(cluster_kind: str = "rayclusters") -> bool:
    return scaling_complete(get_cluster_status(cluster_kind))


def wait_until_scaling_complete(cluster_kind: str = "rayclusters", timeout: float = WAIT_TIMEOUT_SECONDS,
                                poll_seconds: float = SCALE_POLL_SECONDS) -> bool:
    _run(cluster_kind, lambda c, name: c.wait_scaled(cluster_kind, name, timeout, poll_seconds))
    return True


def update_hw_tier_of_head_node(cluster_kind: str = "rayclusters", head_hw_tier_name: str = "Small") -> Any:
    return _run(cluster_kind, lambda c, name: c.head_hw_tier(cluster_kind, name, head_hw_tier_name))


def restart_head_node(cluster_kind: str = "rayclusters") -> Any:
    return _run(cluster_kind, lambda c, name: c.restart_head(cluster_kind, name))


def restart_head_node_status(cluster_kind: str = "rayclusters", restarted_since: str = NEVER) -> Any:
    return _run(cluster_kind, lambda c, name: c.restart_status(cluster_kind, name, restarted_since))


def wait_until_node_restarted(cluster_kind: str = "rayclusters", restarted_since: str = NEVER,
                              timeout: float = WAIT_TIMEOUT_SECONDS,
                              poll_seconds: float = RESTART_POLL_SECONDS) -> None:
    _run(cluster_kind, lambda c, name: c.wait_restarted(cluster_kind, name, restarted_since, timeout, poll_seconds))
