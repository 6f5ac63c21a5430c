"""Who is calling, and are they an admin: Kubernetes decides both.

Credentials (`credential`), exactly one of:
- `Authorization: Bearer <token>`: a TokenReview (any token the cluster
  accepts: ServiceAccount, OIDC, ...), with the configured audiences when
  there are any; a token the review rejects, or whose audiences miss ours, is
  401. Another scheme, an empty token, or whitespace in it is 401 unasked.
- `X-Domino-Api-Key: <key>` or `X-Api-Key: <key>`: the key's SHA-256 is looked
  up in a Secret (`KeyStore`); unknown keys are 401.
None, or more than one, is 401.

Identity: the user id clusters are owned by is the TokenReview's `user.uid`
when the cluster gives one (ServiceAccounts: their uid, a valid label value,
where their username `system:serviceaccount:ns:name` is not), else its
`username` (OIDC: the claim the API server maps to usernames). An API key's
user id is the `user` its Secret entry names.

Admins (`is_admin`, per kind): a member of a configured admin group, or a
user a SubjectAccessReview allows to `update` `<resource>/scale` of the
kind's API group in every namespace.

Both reviews' answers (accepted or not) are cached `ttl` seconds in a
bounded LRU keyed by the token's SHA-256, never by the token; a review that
could not be carried out is `AuthUnavailable` (503) and is not cached.
Tokens and keys never appear in a message, a log line or a cache key.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import yaml

from ..errors import KubeApiError
from .errors import AuthUnavailable, Unauthenticated

log = logging.getLogger(__name__)

API_KEY_HEADERS = ("X-Domino-Api-Key", "X-Api-Key")
MAX_CREDENTIAL_LENGTH = 16384
NO_CREDENTIALS = "no credentials: send Authorization: Bearer <token> or X-Domino-Api-Key: <key>"


@dataclass(frozen=True)
class Credential:
    scheme: str  # "bearer" or "api-key"
    secret: str = field(repr=False)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.secret.encode()).hexdigest()


@dataclass(frozen=True)
class Identity:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    via: str = "bearer"

    @property
    def user_id(self) -> str:
        return self.uid or self.username


def credential(headers: Mapping[str, str]) -> Credential:
    """The one credential in `headers` (case-insensitive mapping), or Unauthenticated."""
    given = [(h, headers.get(h)) for h in ("Authorization", *API_KEY_HEADERS) if headers.get(h) is not None]
    if not given:
        raise Unauthenticated(NO_CREDENTIALS)
    if len(given) > 1:
        raise Unauthenticated("send exactly one credential: Authorization, X-Domino-Api-Key or X-Api-Key")
    header, value = given[0]
    if header == "Authorization":
        scheme, _, secret = value.strip().partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise Unauthenticated("malformed Authorization header: expected 'Bearer <token>'")
        kind = "bearer"
    else:
        secret, kind = value.strip(), "api-key"
        if not secret:
            raise Unauthenticated(f"malformed {header} header: empty key")
    if len(secret) > MAX_CREDENTIAL_LENGTH or any(c.isspace() or not c.isprintable() for c in secret):
        raise Unauthenticated(f"malformed credential in the {header} header")
    return Credential(kind, secret)


class TTLCache:
    """At most `size` entries, each kept `ttl` seconds; least recently used go first."""

    def __init__(self, size: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.size, self.ttl, self.clock = size, ttl, clock
        self._items: OrderedDict = OrderedDict()

    def get(self, key, default=None):
        item = self._items.get(key)
        if item is None or self.clock() - item[0] >= self.ttl:
            self._items.pop(key, None)
            return default
        self._items.move_to_end(key)
        return item[1]

    def put(self, key, value) -> None:
        self._items[key] = (self.clock(), value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


# ------------------------------------------------------------------ API keys


def parse_keys(data: Mapping[str, str] | None) -> dict[str, Identity]:
    """{sha256 hex: Identity} from a Secret's `data` (base64 values).

    Every data key holds a YAML list of `{sha256: <hex>, user: <id>, groups: [...]}`
    (`sha256` may also be written `sha256:<hex>` under `hash`).
    """
    keys: dict[str, Identity] = {}
    for name, encoded in (data or {}).items():
        entries = yaml.safe_load(base64.b64decode(encoded).decode()) or []
        if not isinstance(entries, list):
            raise ValueError(f"Secret key {name!r}: a list of API key entries")
        for i, entry in enumerate(entries):
            where = f"Secret key {name!r} entry {i}"
            if not isinstance(entry, Mapping):
                raise ValueError(f"{where}: a mapping of sha256, user, groups")
            digest = str(entry.get("sha256") or str(entry.get("hash") or "").removeprefix("sha256:")).lower()
            user, groups = entry.get("user"), entry.get("groups") or []
            if len(digest) != 64 or set(digest) - set("0123456789abcdef"):
                raise ValueError(f"{where}: sha256 must be 64 hex digits")
            if not isinstance(user, str) or not user or not isinstance(groups, list):
                raise ValueError(f"{where}: user is a non-empty string, groups a list")
            keys[digest] = Identity(username=user, groups=tuple(str(g) for g in groups), via="api-key")
    return keys


class KeyStore:
    """The API keys of one Secret, read when needed and kept `ttl` seconds."""

    def __init__(self, kube, namespace: str | None, name: str | None, ttl: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kube, self.namespace, self.name, self.ttl, self.clock = kube, namespace, name, ttl, clock
        self._cached: tuple[float, dict[str, Identity]] | None = None

    async def lookup(self, digest: str) -> Identity | None:
        if self.name is None:
            return None
        if not self._cached or self.clock() - self._cached[0] >= self.ttl:
            try:
                secret = await self.kube.get("v1", "secrets", self.namespace, self.name)
            except KubeApiError as e:
                raise AuthUnavailable("cannot read the API keys Secret", str(e)) from e
            try:
                keys = parse_keys((secret or {}).get("data"))
            except (ValueError, TypeError, yaml.YAMLError) as e:
                raise AuthUnavailable("the API keys Secret is malformed", str(e)) from e
            self._cached = (self.clock(), keys)
        return self._cached[1].get(digest)


# ------------------------------------------------------------------ the authenticator


def identity_from_review(status: Mapping, audiences: Sequence[str]) -> Identity | None:
    """The identity a TokenReview status accepts, None when it does not."""
    if status.get("authenticated") is not True:
        return None
    if audiences and not set(audiences) & set(status.get("audiences") or ()):
        return None
    user = status.get("user") or {}
    if not user.get("username"):
        return None
    extra = {str(k): tuple(str(x) for x in v or ()) for k, v in (user.get("extra") or {}).items()}
    return Identity(username=user["username"], uid=user.get("uid") or "",
                    groups=tuple(user.get("groups") or ()), extra=extra, via="bearer")


class Authenticator:
    """Credentials to identities, and the admin decision, with a cache."""

    def __init__(self, reviews, keys: KeyStore | None = None, *, admin_groups: Sequence[str] = (),
                 audiences: Sequence[str] = (), ttl: float = 10.0, size: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.reviews = reviews
        self.keys = keys
        self.admin_groups = frozenset(admin_groups)
        self.audiences = tuple(audiences)
        self._tokens = TTLCache(size, ttl, clock)
        self._access = TTLCache(size, ttl, clock)

    async def authenticate(self, headers: Mapping[str, str]) -> Identity:
        cred = credential(headers)
        if cred.scheme == "api-key":
            found = await self.keys.lookup(cred.digest) if self.keys else None
            if found is None:
                raise Unauthenticated("unknown API key")
            return found
        cached = self._tokens.get(cred.digest, default=...)
        if cached is ...:
            status = await self.reviews.token_review(cred.secret, self.audiences)
            cached = identity_from_review(status, self.audiences)
            self._tokens.put(cred.digest, cached)
        if cached is None:
            raise Unauthenticated("the token was not accepted (invalid, expired or for another audience)")
        return cached

    async def is_admin(self, who: Identity, api_group: str, resource: str) -> bool:
        if self.admin_groups & set(who.groups):
            return True
        key = (who.username, who.uid, who.groups, api_group, resource)
        allowed = self._access.get(key)
        if allowed is None:
            attributes = {"group": api_group, "resource": resource, "subresource": "scale", "verb": "update"}
            allowed = await self.reviews.access_review(who.username, who.groups, who.uid, who.extra, attributes)
            self._access.put(key, allowed)
        return allowed
