"""Who may do what with autoscalers: exactly who may do it to the HPAs.

An autoscaler is a HorizontalPodAutoscaler, so the API asks Kubernetes
(SubjectAccessReview) whether the caller may `<verb>` horizontalpodautoscalers
(group `autoscaling`) in the namespace: `create` in the workload's namespace
to create, `get` / `delete` of that HPA by name to read or delete one, `list`
to see a namespace's autoscalers in a list. The API's own, broader rights
(deploy/autoscaling-api) thus never let a caller do more than `kubectl` would
let them do to HPAs. Members of an admin group (`--admin-group`) may do
everything, unasked.

Answers are cached `ttl` seconds in a bounded LRU keyed by the identity and
the attributes (never by a credential); a review that cannot be carried out is
`AuthUnavailable` (503), not cached.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..api.auth import Authenticator, Identity, TTLCache
from ..api.errors import Forbidden

GROUP = "autoscaling"
RESOURCE = "horizontalpodautoscalers"


class HpaAccess:
    def __init__(self, auth: Authenticator, ttl: float = 10.0, size: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.auth = auth
        self._answers = TTLCache(size, ttl, clock)

    async def allowed(self, who: Identity, verb: str, namespace: str, name: str = "") -> bool:
        """Whether `who` may `verb` HPAs in `namespace` ("": cluster-wide), `name` ("": any)."""
        if self.auth.admin_groups & set(who.groups):
            return True
        key = (who.username, who.uid, who.groups, verb, namespace, name)
        answer = self._answers.get(key)
        if answer is None:
            attributes = {"group": GROUP, "resource": RESOURCE, "verb": verb, "namespace": namespace}
            if name:
                attributes["name"] = name
            answer = await self.auth.reviews.access_review(who.username, who.groups, who.uid, who.extra, attributes)
            self._answers.put(key, answer)
        return answer

    async def require(self, who: Identity, verb: str, namespace: str, name: str = "") -> None:
        if not await self.allowed(who, verb, namespace, name):
            target = f"horizontalpodautoscaler {name}" if name else "horizontalpodautoscalers"
            raise Forbidden(f"{who.username} may not {verb} {target} in namespace {namespace}")

    async def visible(self, who: Identity, namespaces: set[str]) -> set[str]:
        """The namespaces whose autoscalers `who` may list (one review when cluster-wide is allowed)."""
        if await self.allowed(who, "list", ""):
            return set(namespaces)
        return {ns for ns in sorted(namespaces) if await self.allowed(who, "list", ns)}
