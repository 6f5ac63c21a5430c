"""The provider's client of the startup-script server (``DATACRUNCH_STARTUP_SCRIPT_FETCH_URL``).

For each instance it creates, the provider asks the server for a script:
``POST <url>`` with the instance's names (`core.startup_scripts.ScriptRequest`)
and the provider's ServiceAccount token as a bearer token; the server renders
the script, uploads it to Verda and answers its id as plain text (as seed
002's server does). The token file is read at each call (kubelet rotates it)
and never logged. Every failure is one `NodeGroupError` of kind
`SCRIPT_UNAVAILABLE`, so the autoscaler counts a failed scale-up and backs the
group off.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from ..core.startup_scripts import ScriptRequest
from ..errors import NodeGroupError

SCRIPT_UNAVAILABLE = "startup_script"
FETCH_TIMEOUT_SECONDS = 30.0  # the server reads Secrets and uploads to Verda before it answers
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
URL_VARIABLE = "DATACRUNCH_STARTUP_SCRIPT_FETCH_URL"  # VERDA_* too, as for every provider variable
_SCRIPT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


class ScriptSource:
    def __init__(self, url: str, token_file: Path = SERVICE_ACCOUNT_TOKEN, *, http: httpx.Client | None = None,
                 timeout: float = FETCH_TIMEOUT_SECONDS) -> None:
        self.url = url
        self.token_file = token_file
        self._http = http or httpx.Client()
        self._timeout = timeout

    def fetch(self, request: ScriptRequest) -> str:
        """Have the server upload this instance's script; its Verda id."""
        what = f"startup script {request.script_name} from {self.url}"
        try:
            token = self.token_file.read_text().strip()
        except OSError as e:
            raise NodeGroupError(SCRIPT_UNAVAILABLE, f"{what}: cannot read the token {self.token_file}: "
                                                     f"{e.strerror}") from None
        try:
            r = self._http.post(self.url, json=request.body(), timeout=self._timeout,
                                headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as e:
            raise NodeGroupError(SCRIPT_UNAVAILABLE, f"{what}: {type(e).__name__}: {e}") from None
        text = r.text.strip()
        if r.status_code != 200:
            raise NodeGroupError(SCRIPT_UNAVAILABLE, f"{what}: HTTP {r.status_code}: {text[:300]}")
        if not _SCRIPT_ID.fullmatch(text):
            raise NodeGroupError(SCRIPT_UNAVAILABLE, f"{what}: the answer is not a script id: {text[:80]!r}")
        return text


def from_env(env) -> ScriptSource | None:
    """The source ``DATACRUNCH_STARTUP_SCRIPT_FETCH_URL`` names, if any (VERDA_* too), with the token
    at ``DATACRUNCH_STARTUP_SCRIPT_TOKEN_FILE`` (default: the pod's ServiceAccount token; deploy/verda
    projects one whose audience is the server's alone)."""
    from ..errors import NodeGroupConfigError
    from .config import optional

    url = optional(env, "STARTUP_SCRIPT_FETCH_URL")
    if url is None:
        return None
    if not url.startswith(("http://", "https://")):
        raise NodeGroupConfigError(URL_VARIABLE, "not an http(s) URL")
    token_file = optional(env, "STARTUP_SCRIPT_TOKEN_FILE")
    return ScriptSource(url, Path(token_file) if token_file else SERVICE_ACCOUNT_TOKEN)
