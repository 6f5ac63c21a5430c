"""tests/secrets_seen.py: the grep for secrets through everything the suite captured, table-driven.

One row per case: where a secret is (or is not) and what is reported; then the capture around
it (kubectl, HTTP answers, Events, logs) and `check` failing with the place and never the secret.
"""

from __future__ import annotations

import base64
import contextlib
import json
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import requests

import secrets_seen as s


def b64url(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


HEADER = b64url({"alg": "RS256", "kid": "k1"})
TOKEN = f"{HEADER}.{b64url({'iss': 'sandbox', 'sub': 'system:serviceaccount:ns:owner'})}.{'S' * 342}"
OTHER = f"{HEADER}.{b64url({'iss': 'sandbox', 'sub': 'system:serviceaccount:ns:else'})}.{'T' * 342}"
KEY = "e2e-api-key-" + "7" * 32
SECRETS = {TOKEN: "kubectl create token owner", KEY: "an API key"}


def where(leaks: list[s.Leak]) -> list[tuple[str, str, int]]:
    """(where, what, times), the fingerprint's origin and form read from `what`."""
    return [(leak.where, leak.what, leak.times) for leak in leaks]


def as_is(secret: str, origin: str, form: str = "as is") -> str:
    return f"{s.fingerprint(secret)} ({origin}; {form})"


@pytest.mark.parametrize("text, expected", [
    pytest.param("GET /healthz 200\n", [], id="nothing"),
    pytest.param(f"auth with Bearer {TOKEN} failed\n", [("log", as_is(TOKEN, SECRETS[TOKEN]), 1)],
                 id="a-token-as-is"),
    pytest.param(f"X-Domino-Api-Key: {KEY}\n", [("log", as_is(KEY, "an API key"), 1)], id="an-api-key"),
    pytest.param(f"{KEY} and again {KEY}", [("log", as_is(KEY, "an API key"), 2)], id="counted"),
    pytest.param(f"secret data: {base64.b64encode(KEY.encode()).decode()}",
                 [("log", as_is(KEY, "an API key", "base64"), 1)], id="base64-encoded"),
    pytest.param(f"key={KEY}&token={TOKEN}", [("log", as_is(TOKEN, SECRETS[TOKEN]), 1),
                                               ("log", as_is(KEY, "an API key"), 1)], id="both"),
    pytest.param(f"Bearer {TOKEN[:len(TOKEN) - 342 - 20]}...",
                 [("log", f"the start of {s.fingerprint(TOKEN)} ({SECRETS[TOKEN]}), cut short", 1)],
                 id="a-remembered-token-cut-short"),
    pytest.param(f"Bearer {OTHER}", [("log", f"{s.fingerprint(OTHER.rsplit('.', 1)[0])} (JWT-shaped: a token "
                                             "the tests did not remember; its header and payload)", 1)],
                 id="a-token-nobody-remembered"),
    pytest.param(f"e2e-api-key-{'7' * 31}", [], id="almost-the-key"),
    pytest.param("eyJhbGciOiJub25lIn0 is a header alone", [], id="a-jwt-header-alone"),
])
def test_find_leaks(text: str, expected: list) -> None:
    for data in (text, text.encode()):
        leaks, count, size = s.find_leaks(SECRETS, [("log", data)])
        assert where(leaks) == sorted(expected)
        assert (count, size) == (1, len(text.encode()))


def test_each_source_is_named_and_counted() -> None:
    leaks, count, size = s.find_leaks(SECRETS, [("log a.log", "clean"), ("Event ns/e1", f"msg {KEY}"),
                                                ("HTTP 401 answer to GET /x", b"no")])
    assert [leak.where for leak in leaks] == ["Event ns/e1"]
    assert (count, size) == (3, 5 + 4 + len(KEY) + 2)


def test_a_place_named_after_a_secret_is_not_named_with_it() -> None:
    (leak,), _, _ = s.find_leaks(SECRETS, [(f"HTTP 404 answer to GET /keys/{KEY}", f"no key {KEY}")])
    assert KEY not in leak.where and leak.where == f"HTTP 404 answer to GET /keys/<{s.fingerprint(KEY)}>"


def test_the_report_names_places_and_fingerprints_never_secrets() -> None:
    leaks, _, _ = s.find_leaks(SECRETS, [("log pods/api/container.log", f"{TOKEN} {KEY}")])
    text = s.report(leaks)
    assert TOKEN not in text and KEY not in text
    assert text.splitlines() == [
        "2 secret(s) found where the suite captured them (issue 12: none may be):",
        f"  log pods/api/container.log: {as_is(TOKEN, SECRETS[TOKEN])}, 1 time(s)",
        f"  log pods/api/container.log: {as_is(KEY, 'an API key')}, 1 time(s)"]


def test_summary() -> None:
    assert s.summary(3, {"log files": 2, "Events": 5}, 12345, 0.25) == (
        "secrets seen: 3 secrets looked for in 2 log files, 5 Events (12,345 bytes) in 0.2 s")


@pytest.mark.parametrize("secret, remembered", [
    pytest.param("", False, id="empty-ignored"),
    pytest.param(KEY, True, id="kept"),
])
def test_remember(isolated, secret: str, remembered: bool) -> None:
    assert s.remember(secret, "here") == secret
    assert (secret in s._secrets) is remembered


def test_a_secret_too_short_to_look_for_is_refused(isolated) -> None:
    with pytest.raises(ValueError, match="too short"):
        s.remember("abc", "here")


# ---------------------------------------------------------------- capture


@pytest.fixture
def isolated(monkeypatch):
    """The module's registries, empty for one test."""
    for name, empty in (("_secrets", {}), ("_logs", set()), ("_events", {}), ("_bodies", []),
                        ("last_summary", None)):
        monkeypatch.setattr(s, name, empty)


class FakeKube:
    def __init__(self, events: dict[str | None, list[dict]]) -> None:
        self.events, self.calls = events, []

    def kubectl(self, *args: str, check: bool = True):
        self.calls.append(args)
        namespace = args[args.index("-n") + 1] if "-n" in args else None
        return SimpleNamespace(returncode=0, stdout=json.dumps({"items": self.events.get(namespace, [])}))


def event(namespace: str, name: str, message: str) -> dict:
    return {"metadata": {"uid": f"{namespace}/{name}", "namespace": namespace, "name": name},
            "reason": "Scaled", "involvedObject": {"kind": "Cluster", "name": "c"}, "message": message}


def test_kubectl_create_token_is_remembered_and_events_kept_before_a_namespace_goes(isolated) -> None:
    s.after_kubectl(("create", "token", "owner", "-n", "ns"), SimpleNamespace(returncode=0, stdout=TOKEN + "\n"))
    s.after_kubectl(("create", "token", "x"), SimpleNamespace(returncode=1, stdout=""))
    s.after_kubectl(("get", "pods"), SimpleNamespace(returncode=0, stdout=KEY))
    assert s._secrets == {TOKEN: "kubectl create token owner -n ns"}
    kube = FakeKube({"t-1": [event("t-1", "e1", "fine")]})
    s.before_kubectl(kube, ("delete", "namespace", "t-1", "t-2", "--wait=false"))
    s.before_kubectl(kube, ("delete", "pod", "p"))
    assert kube.calls == [("get", "events", "-n", "t-1", "-o", "json"), ("get", "events", "-n", "t-2", "-o", "json")]
    assert list(s._events) == ["t-1/e1"] and s._events["t-1/e1"][0] == "Event t-1/e1 (Scaled on Cluster/c)"


@pytest.fixture
def server():
    """A loopback server answering 401 with the API key in its body (a leak)."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = (200, b"ok") if self.path == "/ok" else (401, f"bad key {KEY}".encode())
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("outer", [False, True], ids=["alone", "inside-the-sessions-capture"])
async def test_error_answers_over_the_network_are_kept_once(isolated, server: str, outer: bool) -> None:
    sends = httpx.Client.send, httpx.AsyncClient.send, requests.Session.send
    mock = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500, text=KEY)))
    with s.capture_http() if outer else contextlib.nullcontext(), s.capture_http():
        assert httpx.get(f"{server}/ok").status_code == 200
        assert httpx.get(f"{server}/sync?q=1").status_code == 401
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{server}/async")).status_code == 401
        assert requests.get(f"{server}/requests", timeout=5).status_code == 401
        assert mock.get("http://test/mocked").status_code == 500  # not over the network
    assert (httpx.Client.send, httpx.AsyncClient.send, requests.Session.send) == sends  # restored
    host = server.removeprefix("http://")
    assert [w for w, _ in s._bodies] == [f"HTTP 401 answer to GET http://{host}/{p}" for p in ("sync", "async", "requests")]
    leaks, _, _ = s.find_leaks({KEY: "an API key"}, s._bodies)
    assert len(leaks) == 3


@pytest.fixture
def scratch():
    """A directory outside the session's temporary one: what these tests plant there is no leak
    for the session's own check to find."""
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "session").mkdir()
        yield Path(d) / "session"


def test_check_fails_naming_the_log_and_the_event_never_the_secret(isolated, scratch: Path) -> None:
    tmp_path = scratch
    pod_token = OTHER  # a pod's own projected token, remembered at the end
    (tmp_path / "sb" / "pods" / "ns_api_1" / "volumes" / "kube-api-access-x").mkdir(parents=True)
    (tmp_path / "sb" / "pods" / "ns_api_1" / "volumes" / "kube-api-access-x" / "token").write_text(pod_token)
    (tmp_path / "sb" / "pods" / "ns_api_1" / "container.log").write_text(f"started with {pod_token}\n")
    (tmp_path / "sb" / "logs").mkdir()
    (tmp_path / "sb" / "logs" / "kube-apiserver.log").write_text("clean\n")
    (tmp_path / "operator.kubeconfig").write_text(f"token: {KEY}\n")  # not a log: not read
    elsewhere = tmp_path.parent / f"{tmp_path.name}-host.log"
    elsewhere.write_text(f"-- {KEY}\n")
    s.keep_log(elsewhere)
    s.remember(KEY, "an API key")
    kube = FakeKube({None: [event("ns", "e1", f"refused key {KEY}")]})
    with pytest.raises(AssertionError) as failed:
        s.check(kube, tmp_path)
    text = str(failed.value)
    assert KEY not in text and pod_token not in text
    assert text.splitlines()[1:] == sorted([
        f"  log sb/pods/ns_api_1/container.log: {as_is(pod_token, 'pod ns_api_1' + chr(39) + 's projected token')}"
        ", 1 time(s)",
        f"  Event ns/e1 (Scaled on Cluster/c): {as_is(KEY, 'an API key')}, 1 time(s)",
        f"  log {elsewhere}: {as_is(KEY, 'an API key')}, 1 time(s)"])
    assert s.last_summary.startswith("secrets seen: 2 secrets looked for in 3 log files, 1 Events, 0 error answers (")


def test_check_passes_when_nothing_leaked(isolated, scratch: Path) -> None:
    tmp_path = scratch
    (tmp_path / "api.log").write_text("GET /x 401\n")
    s.remember(KEY, "an API key")
    assert s.check(FakeKube({}), tmp_path).startswith("secrets seen: 1 secrets looked for in 1 log files")
    assert (tmp_path / "secrets-seen" / "events.jsonl").exists()
