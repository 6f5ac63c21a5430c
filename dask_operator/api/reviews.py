"""TokenReview and SubjectAccessReview, POSTed through kr8s.

`Kube` (the operator's client) has no verb that returns what a create
answers, and a review's answer is all that matters, so this module calls the
API through the same kr8s `Api` that `Kube` gets its credentials from. The
token under review travels only in the request body: it is never logged, and
errors carry the API server's message, which never repeats it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import httpx

from .errors import AuthUnavailable

AUTHENTICATION = "authentication.k8s.io/v1"
AUTHORIZATION = "authorization.k8s.io/v1"
REVIEW_TIMEOUT_SECONDS = 10.0


class KubeReviews:
    """The two reviews the API needs; every failure is `AuthUnavailable`."""

    def __init__(self, api) -> None:
        """`api`: a `kr8s.asyncio.Api` (e.g. `Kube.api`)."""
        self.api = api

    async def _create(self, version: str, plural: str, body: Mapping) -> Mapping:
        try:
            async with self.api.call_api("POST", version=version, base="/apis", url=plural,
                                         content=json.dumps(body), timeout=REVIEW_TIMEOUT_SECONDS,
                                         headers={"Content-Type": "application/json"}) as response:
                answer = response.json()
        except (httpx.HTTPError, ValueError) as e:
            raise AuthUnavailable(f"the {plural} API could not be reached", f"{type(e).__name__}: {e}") from e
        except Exception as e:  # kr8s.ServerError and the like: the API server's own message
            raise AuthUnavailable(f"the {plural} API refused the review", f"{type(e).__name__}: {e}") from e
        status = answer.get("status") if isinstance(answer, Mapping) else None
        if not isinstance(status, Mapping):
            raise AuthUnavailable(f"the {plural} API answered without a status")
        return status

    async def token_review(self, token: str, audiences: Sequence[str] = ()) -> Mapping:
        """The TokenReview's status: `authenticated`, `user`, `audiences`, `error`."""
        spec: dict = {"token": token}
        if audiences:
            spec["audiences"] = list(audiences)
        return await self._create(AUTHENTICATION, "tokenreviews",
                                  {"apiVersion": AUTHENTICATION, "kind": "TokenReview", "spec": spec})

    async def access_review(self, user: str, groups: Sequence[str], uid: str | None,
                            extra: Mapping[str, Sequence[str]], attributes: Mapping) -> bool:
        """Whether a SubjectAccessReview allows `attributes` (resourceAttributes) to the user."""
        spec: dict = {"user": user, "groups": list(groups), "resourceAttributes": dict(attributes)}
        if uid:
            spec["uid"] = uid
        if extra:
            spec["extra"] = {k: list(v) for k, v in extra.items()}
        status = await self._create(AUTHORIZATION, "subjectaccessreviews",
                                    {"apiVersion": AUTHORIZATION, "kind": "SubjectAccessReview", "spec": spec})
        return status.get("allowed") is True and status.get("denied") is not True
