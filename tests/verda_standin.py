"""A stand-in for Verda's public API (formerly DataCrunch), enough for the real `verda` SDK.

Serves, below ``/v1`` on 127.0.0.1, what the node-group provider calls through
the SDK: ``POST /oauth2/token`` (client credentials and refresh token),
``GET /instance-types`` (prices and spot prices), ``GET /instance-availability``
and ``GET /instance-availability/{type}``, ``GET /locations``, ``GET /instances``,
``GET /instances/{id}``, ``POST /instances``, ``PUT /instances`` (actions),
``GET/POST/DELETE /scripts`` and ``GET/DELETE /scripts/{id}``. Errors have the
API's shape, ``{"code": ..., "message": ...}``.

Knobs: ``capacity[(type, location, is_spot)]`` (instances left; missing
means plenty), ``quota`` (instances the account may still create; None:
no limit), ``delay`` (seconds before every answer), ``fail_next`` (answer the
next request of a route with an error). It records every create payload, every
deleted instance and volume, and every request (method, path, query).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from secrets_seen import remember

LOCATIONS = [{"code": "FIN-01", "name": "Finland 1", "country_code": "FI"},
             {"code": "FIN-03", "name": "Finland 3", "country_code": "FI"},
             {"code": "ICE-01", "name": "Iceland 1", "country_code": "IS"}]


def instance_type(name, cores, memory_gb, gpus, model, price, spot):
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)), "instance_type": name, "price_per_hour": f"{price:.2f}",
            "spot_price": f"{spot:.2f}", "description": f"{gpus}x {model}" if gpus else "CPU node",
            "cpu": {"description": f"{cores} CPU", "number_of_cores": cores},
            "gpu": {"description": f"{gpus}x {model}" if gpus else "", "number_of_gpus": gpus},
            "memory": {"description": f"{memory_gb}GB RAM", "size_in_gigabytes": memory_gb},
            "gpu_memory": {"description": "", "size_in_gigabytes": 80 * gpus}, "storage": {"description": "NVMe"},
            "best_for": ["training"], "model": model, "name": model or "CPU", "p2p": "", "currency": "usd",
            "manufacturer": "NVIDIA" if gpus else "AMD", "display_name": name, "supported_os": ["ubuntu-24.04"]}


INSTANCE_TYPES = [
    instance_type("1A100.22V", 22, 120, 1, "A100", 1.29, 0.45),
    instance_type("8H100.80S.176V", 176, 1480, 8, "H100 SXM5", 19.92, 6.40),
    instance_type("CPU.4V.16G", 4, 16, 0, "", 0.12, 0.04),
]


@dataclass
class VerdaStandIn:
    client_id: str = "standin-client-id"
    client_secret: str = "standin-client-secret"
    token_lifetime: int = 3600
    capacity: dict = field(default_factory=dict)
    quota: int | None = None
    delay: float = 0.0
    fail_next: dict = field(default_factory=dict)  # (method, route) -> (http status, code, message)
    instances: dict = field(default_factory=dict)
    scripts: dict = field(default_factory=dict)
    uploaded: list = field(default_factory=list)  # every script ever uploaded, as uploaded
    deleted_scripts: list = field(default_factory=list)  # ids, in the order of their deletion
    created: list = field(default_factory=list)
    deleted: list = field(default_factory=list)
    deleted_volumes: list = field(default_factory=list)
    requests: list = field(default_factory=list)
    tokens: set = field(default_factory=set)

    def __post_init__(self) -> None:
        remember(self.client_secret, "the Verda stand-in's client secret")
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> str:
        """Serve on 127.0.0.1; return the base URL the SDK takes."""
        stand_in = self

        class Handler(_Handler):
            api = stand_in

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True, name="verda-standin").start()
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    # ---------------------------------------------------------------- test helpers

    def set_status(self, instance_id: str, status: str) -> None:
        with self.lock:
            self.instances[instance_id]["status"] = status

    def add_instance(self, hostname: str, description: str, status: str = "running", **extra) -> str:
        """An instance made elsewhere (the console, another tool)."""
        with self.lock:
            return self._new_instance({"hostname": hostname, "description": description,
                                       "instance_type": "1A100.22V", "location_code": "FIN-01", **extra}, status)

    def count(self, method: str, path_prefix: str) -> int:
        with self.lock:
            return sum(1 for m, p, _ in self.requests if m == method and p.startswith(path_prefix))

    # ---------------------------------------------------------------- the API

    def _new_instance(self, body: dict, status: str = "provisioning") -> str:
        iid = str(uuid.uuid4())
        itype = next(t for t in INSTANCE_TYPES if t["instance_type"] == body["instance_type"])
        spot = bool(body.get("is_spot"))
        volume = body.get("os_volume") or {}
        self.instances[iid] = {
            "id": iid, "instance_type": itype["instance_type"], "hostname": body["hostname"],
            "description": body.get("description", ""), "status": status,
            "price_per_hour": float(itype["spot_price" if spot else "price_per_hour"]),
            "created_at": f"2026-01-01T00:00:{len(self.instances):02d}.000Z",
            "ssh_key_ids": body.get("ssh_key_ids") or [], "cpu": itype["cpu"], "gpu": itype["gpu"],
            "memory": itype["memory"], "storage": {"description": f"{volume.get('size', 50)}GB NVMe"},
            "gpu_memory": itype["gpu_memory"], "ip": None, "os_volume_id": str(uuid.uuid4()),
            "location": body["location_code"], "image": body.get("image"),
            "startup_script_id": body.get("startup_script_id"), "is_spot": spot,
            "contract": "SPOT" if spot else "PAY_AS_YOU_GO", "pricing": body.get("pricing") or "DYNAMIC_PRICE",
        }
        return iid

    def handle(self, method: str, path: str, query: dict, body, token: str | None) -> tuple[int, object]:
        parts = [p for p in path.split("/") if p][1:]  # below /v1
        route = "/" + "/".join(parts[:1])
        with self.lock:
            self.requests.append((method, path, query))
            failure = self.fail_next.pop((method, route), None)
        if failure:
            status, code, message = failure
            return status, {"code": code, "message": message}
        if parts == ["oauth2", "token"] and method == "POST":
            return self._token(body or {})
        if token not in self.tokens:
            return 401, {"code": "unauthorized_request", "message": "Invalid or expired access token"}
        with self.lock:
            return self._route(method, parts, query, body)

    def _token(self, body: dict) -> tuple[int, object]:
        grant = body.get("grant_type")
        ok = (grant == "client_credentials" and body.get("client_id") == self.client_id
              and body.get("client_secret") == self.client_secret) or \
             (grant == "refresh_token" and body.get("refresh_token") in self.tokens)
        if not ok:
            return 401, {"code": "unauthorized_request", "message": "Invalid client credentials"}
        access, refresh = f"standin-access-{uuid.uuid4().hex}", f"standin-refresh-{uuid.uuid4().hex}"
        remember(access, "a Verda stand-in access token")
        remember(refresh, "a Verda stand-in refresh token")
        with self.lock:
            self.tokens |= {access, refresh}
        return 200, {"access_token": access, "refresh_token": refresh, "scope": "cloud-api-v1",
                     "token_type": "Bearer", "expires_in": self.token_lifetime}

    def _route(self, method: str, parts: list[str], query: dict, body) -> tuple[int, object]:
        match (method, parts):
            case ("GET", ["instance-types"]):
                return 200, INSTANCE_TYPES
            case ("GET", ["locations"]):
                return 200, LOCATIONS
            case ("GET", ["instance-availability", name]):
                return 200, self._available(name, query.get("location_code") or "FIN-01",
                                            query.get("isSpot") == "true")
            case ("GET", ["instance-availability"]):
                spot = query.get("isSpot") == "true"
                return 200, [{"location_code": loc["code"], "availabilities": [
                    t["instance_type"] for t in INSTANCE_TYPES if self._available(t["instance_type"], loc["code"], spot)]}
                    for loc in LOCATIONS if query.get("location_code") in (None, loc["code"])]
            case ("GET", ["instances"]):
                status = query.get("status")
                return 200, [i for i in self.instances.values() if status in (None, i["status"])]
            case ("GET", ["instances", iid]):
                if iid not in self.instances:
                    return 404, {"code": "not_found", "message": f"Instance {iid} not found"}
                return 200, self.instances[iid]
            case ("POST", ["instances"]):
                return self._create(body or {})
            case ("PUT", ["instances"]):
                return self._action(body or {})
            case ("GET", ["scripts"]):
                return 200, list(self.scripts.values())
            case ("GET", ["scripts", sid]) if sid in self.scripts:
                return 200, [self.scripts[sid]]
            case ("POST", ["scripts"]):
                sid = str(uuid.uuid4())
                self.scripts[sid] = {"id": sid, "name": body["name"], "script": body["script"]}
                self.uploaded.append(dict(self.scripts[sid]))
                return 200, sid
            case ("DELETE", ["scripts"]):
                for sid in body.get("scripts", []):
                    if self.scripts.pop(sid, None):
                        self.deleted_scripts.append(sid)
                return 200, None
            case ("DELETE", ["scripts", sid]):
                if self.scripts.pop(sid, None):
                    self.deleted_scripts.append(sid)
                return 200, None
        return 404, {"code": "not_found", "message": f"no route {method} /{'/'.join(parts)}"}

    def _available(self, name: str, location: str, spot: bool) -> bool:
        return self.capacity.get((name, location, spot), 1) > 0

    def _create(self, body: dict) -> tuple[int, object]:
        name, location, spot = body.get("instance_type"), body.get("location_code"), bool(body.get("is_spot"))
        if not any(t["instance_type"] == name for t in INSTANCE_TYPES):
            return 400, {"code": "invalid_request", "message": f"Invalid instance type {name}"}
        if location not in {loc["code"] for loc in LOCATIONS} or not body.get("image") or not body.get("hostname"):
            return 400, {"code": "invalid_request", "message": "location_code, image and hostname are required"}
        if self.quota is not None and self.quota <= 0:
            return 403, {"code": "forbidden_action", "message": "Instance quota exceeded for this project"}
        if not self._available(name, location, spot):
            gpus = next(t["gpu"]["number_of_gpus"] for t in INSTANCE_TYPES if t["instance_type"] == name)
            return 503, {"code": "service_unavailable",
                         "message": f"Not enough resources to deploy a {gpus} GPU instance type {name} in {location}"}
        if (name, location, spot) in self.capacity:
            self.capacity[(name, location, spot)] -= 1
        if self.quota is not None:
            self.quota -= 1
        self.created.append(body)
        return 200, self._new_instance(body)

    def _action(self, body: dict) -> tuple[int, object]:
        ids = body.get("id") or []
        ids = [ids] if isinstance(ids, str) else ids
        if missing := [i for i in ids if i not in self.instances]:
            return 404, {"code": "not_found", "message": f"Instances not found: {missing}"}
        if body.get("action") != "delete":
            return 400, {"code": "invalid_request", "message": f"unsupported action {body.get('action')}"}
        for iid in ids:
            self.deleted.append(self.instances.pop(iid))
        if body.get("delete_permanently"):
            self.deleted_volumes.extend(body.get("volume_ids") or [])
        return 202, None


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client that gave up on a slow answer closed its socket: expected, not worth a traceback."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    api: VerdaStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet: the stand-in records requests itself
        pass

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.api.delay:
            time.sleep(self.api.delay)
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            status, answer = 400, {"code": "invalid_request", "message": "body is not JSON"}
        else:
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            status, answer = self.api.handle(method, url.path, query, body, token)
        # Created ids come back as plain text, as the API does (the SDK reads response.text).
        text = answer if isinstance(answer, str) else ("" if answer is None else json.dumps(answer))
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(answer, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")
