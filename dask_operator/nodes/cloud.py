"""What the node groups need of Verda's public API, through the official `verda` SDK.

Routes the SDK (1.25) calls for us, below the base URL (``--api-url``,
default ``https://api.verda.com/v1``): ``POST /oauth2/token``;
``GET /instance-types``; ``GET /instance-availability/{type}?isSpot=&location_code=``;
``GET /instances``, ``GET /instances/{id}``, ``POST /instances`` (create),
``PUT /instances`` (action ``delete``, with the OS volume); ``POST /scripts``,
``DELETE /scripts``.

The SDK sends every request without a timeout; ``_TimedHttp`` and
``_TimedAuth`` add ours. The SDK is blocking (``requests``), which is why the
gRPC server runs calls on a thread pool. Every failure surfaces as one
`VerdaError` whose ``kind`` says what went wrong. No secret or token is ever
put into a message or a log line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests
from verda.authentication import AuthenticationService
from verda.exceptions import APIException
from verda.http_client import HTTPClient, handle_error
from verda.instance_types import InstanceTypesService
from verda.instances import InstancesService
from verda.startup_scripts import StartupScriptsService

from ..core.nodegroups import InstanceType
from ..errors import VerdaError

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.verda.com/v1"
REQUEST_TIMEOUT_SECONDS = 20.0  # one HTTP request, token included
AVAILABILITY_TTL_SECONDS = 30.0  # spot capacity comes and goes: re-ask this often
INSTANCE_TYPES_TTL_SECONDS = 600.0  # prices and shapes change rarely

# Error kinds, for the gRPC edge's table of status codes.
CAPACITY, QUOTA, AUTH, INVALID, NOT_FOUND, UNAVAILABLE = (
    "capacity", "quota", "auth", "invalid", "not_found", "unavailable")
_KINDS_BY_CODE = {"insufficient_funds": QUOTA, "unauthorized_request": AUTH, "forbidden_action": QUOTA,
                  "invalid_request": INVALID, "not_found": NOT_FOUND}


def _kind(e: APIException) -> str:
    message = (e.message or "").lower()
    if "not enough resources" in message or "no capacity" in message:
        return CAPACITY  # seed 002's test: a 503 "Not enough resources to deploy ..."
    if "quota" in message or "limit" in message:
        return QUOTA
    return _KINDS_BY_CODE.get(e.code or "", UNAVAILABLE)


@dataclass(frozen=True)
class Instance:
    """What the provider needs of one Verda instance."""

    id: str
    hostname: str
    description: str
    status: str
    instance_type: str
    location: str
    is_spot: bool
    created_at: str = ""
    os_volume_id: str | None = None
    startup_script_id: str | None = None

    @classmethod
    def from_sdk(cls, i) -> Instance:
        return cls(i.id, i.hostname or "", i.description or "", i.status or "", i.instance_type,
                   i.location, bool(i.is_spot), i.created_at or "", i.os_volume_id, i.startup_script_id)


class _TimedAuth(AuthenticationService):
    """The SDK's client-credentials token request, with a timeout; refreshing re-authenticates."""

    def __init__(self, client_id: str, client_secret: str, base_url: str, timeout: float) -> None:
        super().__init__(client_id, client_secret, base_url)
        self._timeout = timeout

    def authenticate(self) -> dict:
        payload = {"grant_type": "client_credentials", "client_id": self._client_id,
                   "client_secret": self._client_secret}
        response = requests.post(self._base_url + "/oauth2/token", json=payload,
                                 headers=self._generate_headers(), timeout=self._timeout)
        handle_error(response)
        data = response.json()
        self._access_token, self._refresh_token = data["access_token"], data.get("refresh_token")
        self._scope, self._token_type = data.get("scope"), data.get("token_type")
        self._expires_at = time.time() + data["expires_in"]
        return data

    def refresh(self) -> dict:
        return self.authenticate()


class _TimedHttp(HTTPClient):
    """The SDK's HTTP client, every request with our timeout."""

    def __init__(self, auth: AuthenticationService, base_url: str, timeout: float) -> None:
        self._timeout = timeout
        super().__init__(auth, base_url)

    def _request(self, method, url, json=None, params=None, path_params=None, **kwargs):
        kwargs.setdefault("timeout", self._timeout)
        return super()._request(method, url, json=json, params=params, path_params=path_params, **kwargs)


@dataclass(frozen=True)
class _Services:
    instances: InstancesService
    instance_types: InstanceTypesService
    scripts: StartupScriptsService


class VerdaCloud:
    """Thin client; the SDK is built at first use, so a Verda outage never stops the server starting."""

    def __init__(self, client_id: str, client_secret: str, api_url: str = DEFAULT_API_URL, *,
                 timeout: float = REQUEST_TIMEOUT_SECONDS, availability_ttl: float = AVAILABILITY_TTL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not client_id or not client_secret:
            raise ValueError("a client id and a client secret are needed")
        self._credentials = (client_id, client_secret)
        self.api_url = api_url.rstrip("/")
        self._timeout = timeout
        self._availability_ttl = availability_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._services: _Services | None = None
        self._availability: dict[tuple[str, str, bool], tuple[bool, float]] = {}
        self._types: tuple[dict[str, InstanceType], float] | None = None

    def _call(self, what: str, fn: Callable, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except APIException as e:
            if _kind(e) == AUTH:  # a revoked token, say: authenticate afresh next time
                self._services = None
            raise VerdaError(_kind(e), f"{what}: {e.code or 'error'}: {e.message}", e.code) from None
        except requests.Timeout:
            raise VerdaError(UNAVAILABLE, f"{what}: no answer within {self._timeout:g}s") from None
        except (requests.RequestException, ValueError, KeyError, TypeError) as e:
            # ValueError: a non-JSON error body; KeyError/TypeError: an unexpected answer.
            raise VerdaError(UNAVAILABLE, f"{what}: {type(e).__name__}: {e}") from None

    def _sdk(self) -> _Services:
        with self._lock:
            if self._services is None:
                auth = _TimedAuth(*self._credentials, self.api_url, self._timeout)
                http = self._call("authenticate", _TimedHttp, auth, self.api_url, self._timeout)
                self._services = _Services(InstancesService(http), InstanceTypesService(http),
                                           StartupScriptsService(http))
            return self._services

    def instance_types(self) -> dict[str, InstanceType]:
        """Every instance type by name, cached for INSTANCE_TYPES_TTL_SECONDS."""
        now = self._clock()
        if self._types and now < self._types[1]:
            return self._types[0]
        found = self._call("list instance types", self._sdk().instance_types.get)
        types = {t.instance_type: _instance_type(t) for t in found}
        self._types = (types, now + INSTANCE_TYPES_TTL_SECONDS)
        return types

    def available(self, instance_type: str, location: str, is_spot: bool) -> bool:
        """Whether Verda has capacity for one more such instance; cached for the availability TTL."""
        key, now = (instance_type, location, is_spot), self._clock()
        cached = self._availability.get(key)
        if cached and now < cached[1]:
            return cached[0]
        answer = bool(self._call(f"availability of {instance_type} in {location}", self._sdk().instances.is_available,
                                 instance_type, is_spot=is_spot, location_code=location))
        self._availability[key] = (answer, now + self._availability_ttl)
        return answer

    def mark_unavailable(self, instance_type: str, location: str, is_spot: bool) -> None:
        """A create failed for capacity: believe that until the availability TTL passes."""
        self._availability[(instance_type, location, is_spot)] = (False, self._clock() + self._availability_ttl)

    def instances(self) -> list[Instance]:
        return [Instance.from_sdk(i) for i in self._call("list instances", self._sdk().instances.get)]

    def create_instance(self, *, instance_type: str, image: str, hostname: str, description: str,
                        location: str, is_spot: bool, ssh_key_ids: tuple[str, ...] = (),
                        disk_size_gb: int | None = None, startup_script_id: str | None = None,
                        pricing: str | None = None) -> Instance:
        # The OS volume is named after the host, as seed 002 does, so it can be found again.
        os_volume = {"name": hostname, "size": disk_size_gb} if disk_size_gb else None
        created = self._call(
            f"create {instance_type} in {location}", self._sdk().instances.create,
            instance_type=instance_type, image=image, hostname=hostname, description=description,
            ssh_key_ids=list(ssh_key_ids), location=location, startup_script_id=startup_script_id,
            os_volume=os_volume, is_spot=is_spot, pricing=pricing, wait_for_status=None)
        return Instance.from_sdk(created)

    def delete_instances(self, ids: list[str], volume_ids: list[str]) -> None:
        """Delete instances and, permanently, the given (OS) volumes with them."""
        self._call(f"delete instances {', '.join(ids)}", self._sdk().instances.action, ids, "delete",
                   volume_ids=volume_ids or None, delete_permanently=bool(volume_ids))

    def create_script(self, name: str, script: str) -> str:
        return self._call(f"upload startup script {name}", self._sdk().scripts.create, name, script).id

    def scripts(self) -> list[tuple[str, str]]:
        """Every startup script as (id, name)."""
        return [(s.id, s.name) for s in self._call("list startup scripts", self._sdk().scripts.get)]

    def delete_scripts(self, ids: list[str]) -> None:
        self._call(f"delete startup scripts {', '.join(ids)}", self._sdk().scripts.delete, ids)


def _instance_type(t) -> InstanceType:
    return InstanceType(
        name=t.instance_type,
        cpus=int(t.cpu.get("number_of_cores") or 0),
        memory_gib=int(t.memory.get("size_in_gigabytes") or 0),
        gpus=int(t.gpu.get("number_of_gpus") or 0),
        gpu_model=str(t.model or ""),
        price_per_hour=float(t.price_per_hour),
        spot_price_per_hour=float(t.spot_price_per_hour),
    )
