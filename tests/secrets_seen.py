"""Secrets the tests mint or use, and a grep for them through everything the suite captured (issue 12).

Remembered (`remember`): every `kubectl create token` run through `helpers.Kube.kubectl`
(ServiceAccount tokens: the operator's, the APIs', their callers', deploy/verda's), the scaler
API's keys and re-signed tokens, the Verda stand-in's client secret and each access and refresh
token it hands out, the join tokens in deploy/verda's Secret; at the end, each sandbox pod's own
projected token (`pods/*/volumes/*/token` under the session's temporary directory).

Captured: each namespace's Events just before `Kube.kubectl` deletes it (test namespaces go at each
test's end, their Events with them) and the cluster's remaining Events at the end; every answer
of status >= 400 the tests' HTTP clients (httpx, requests: schemathesis) got over the network;
every log under the session's temporary directory (`*.log`, `*.out`, `*.err`: the sandboxes'
components and `pods/*/container.log`, the operator's pod among them, the host-run operator and
servers, ...) and those registered with `keep_log`.

`check`, at the session's end, looks for each secret as is and base64-encoded, and for any
JWT-shaped text (a header and a payload, signed or cut short) that is not one of them either: a
token minted where the tests do not see it (in a README's shell, a pod's own) or a truncated one.
A finding names the file, Event or answer and the secret's sha256 prefix, never the secret.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

MIN_LENGTH = 12  # shorter "secrets" would be found by chance
PREFIX = 8  # needles are grouped by their first bytes: one scan per group
JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}")  # '{"' base64url-encoded, twice
LOG_SUFFIXES = (".log", ".out", ".err")

_secrets: dict[str, str] = {}  # secret -> where it came from
_logs: set[Path] = set()
_events: dict[str, tuple[str, str]] = {}  # uid -> (where, the Event as JSON)
_bodies: list[tuple[str, bytes]] = []
last_summary: str | None = None
_capturing = False


def fingerprint(secret: str | bytes) -> str:
    """What a report shows of a secret."""
    return "sha256:" + hashlib.sha256(secret.encode() if isinstance(secret, str) else secret).hexdigest()[:12]


def remember(secret: str, origin: str) -> str:
    """Record `secret` (from `origin`, said in a finding) to be looked for at the end; returns it."""
    if secret and len(secret) < MIN_LENGTH:
        raise ValueError(f"a secret of {len(secret)} characters from {origin}: too short to look for")
    if secret:
        _secrets.setdefault(secret, origin)
    return secret


def keep_log(path: Path) -> Path:
    """A log to grep at the end, wherever it is; returns it."""
    _logs.add(Path(path))
    return path


# ------------------------------------------------------------------ the pure part: where is what


@dataclass(frozen=True, order=True)
class Leak:
    where: str
    what: str  # the secret's fingerprint, its origin and the form found
    times: int


def forms(secret: str) -> dict[str, bytes]:
    raw = secret.encode()
    return {"as is": raw, "base64": base64.b64encode(raw).rstrip(b"=")}


def find_leaks(secrets: Mapping[str, str], sources: Iterable[tuple[str, bytes | str]]) -> tuple[list[Leak], int, int]:
    """Each source (where, text) searched for every form of every secret (secret -> origin) and
    for JWT-shaped text that is none of them. Returns (leaks, sources read, bytes read)."""
    groups: dict[bytes, list[tuple[bytes, str]]] = defaultdict(list)
    for secret, origin in secrets.items():
        for form, needle in forms(secret).items():
            groups[needle[:PREFIX]].append((needle, f"{fingerprint(secret)} ({origin}; {form})"))
    redactions = [(needle.decode(), fingerprint(needle)) for needles in groups.values() for needle, _ in needles]
    signed = {m.group(): f"{fingerprint(secret)} ({origin})" for secret, origin in secrets.items()
              if (m := JWT.match(secret.encode()))}  # a remembered token's header and payload
    leaks: list[Leak] = []
    count = size = 0
    for where, data in sources:
        data = data.encode() if isinstance(data, str) else data
        count, size = count + 1, size + len(data)
        found: Counter[str] = Counter()
        starts: set[int] = set()
        for prefix, needles in groups.items():
            at = data.find(prefix)
            while at >= 0:
                for needle, what in needles:
                    if data.startswith(needle, at):
                        found[what] += 1
                        starts.add(at)
                at = data.find(prefix, at + 1)
        for m in JWT.finditer(data):
            if m.start() not in starts:
                cut = [what for start, what in signed.items() if start.startswith(m.group())]
                found[f"the start of {cut[0]}, cut short" if cut else
                      f"{fingerprint(m.group())} (JWT-shaped: a token the tests did not remember; "
                      f"its header and payload)"] += 1
        for needle, shown in redactions:  # a place named after a secret is not named
            where = where.replace(needle, f"<{shown}>")
        leaks += [Leak(where, what, times) for what, times in found.items()]
    return sorted(leaks), count, size


def report(leaks: list[Leak]) -> str:
    lines = [f"{len(leaks)} secret(s) found where the suite captured them (issue 12: none may be):"]
    lines += [f"  {leak.where}: {leak.what}, {leak.times} time(s)" for leak in leaks]
    return "\n".join(lines)


def summary(secrets: int, counts: Mapping[str, int], size: int, took: float) -> str:
    read = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    return f"secrets seen: {secrets} secrets looked for in {read} ({size:,} bytes) in {took:.1f} s"


# ------------------------------------------------------------------ capture during the session


def keep_events(kube, namespace: str | None) -> None:
    """`namespace`'s Events (all namespaces' with None), to grep at the end."""
    out = kube.kubectl("get", "events", *(("-n", namespace) if namespace else ("-A",)), "-o", "json",
                       check=False)
    if out.returncode:
        return
    for e in json.loads(out.stdout).get("items", []):
        meta, about = e.get("metadata", {}), e.get("involvedObject", {})
        _events[meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"] = (
            f"Event {meta.get('namespace')}/{meta.get('name')} ({e.get('reason')} on "
            f"{about.get('kind')}/{about.get('name')})", json.dumps(e))


def before_kubectl(kube, args: tuple[str, ...]) -> None:
    """`helpers.Kube.kubectl`'s: a namespace's Events kept before it is deleted."""
    if len(args) > 2 and args[0] == "delete" and args[1] in ("namespace", "namespaces", "ns"):
        for name in args[2:]:
            if not name.startswith("-"):
                keep_events(kube, name)


def after_kubectl(args: tuple[str, ...], result) -> None:
    """`helpers.Kube.kubectl`'s: a token it minted remembered."""
    if args[:2] == ("create", "token") and result.returncode == 0:
        namespace = f" -n {args[args.index('-n') + 1]}" if "-n" in args[:-1] else ""
        remember(result.stdout.strip(), f"kubectl create token {args[2]}{namespace}")


def _keep_answer(status: int, method: str, url: str, headers, body: bytes) -> None:
    where = f"HTTP {status} answer to {method} {url.split('?', 1)[0]}"
    head = "".join(f"{k}: {v}\n" for k, v in headers.items())
    _bodies.append((where, f"{status}\n{head}\n".encode() + body))


@contextlib.contextmanager
def capture_http():
    """Every answer >= 400 httpx and requests get over the network (not from a mock transport) kept.
    Inside a capture already running (the session's), the outer one keeps them."""
    global _capturing
    if _capturing:
        yield
        return
    import httpx
    import requests

    sync, asynchronous, session = httpx.Client.send, httpx.AsyncClient.send, requests.Session.send
    network = (httpx.HTTPTransport, httpx.AsyncHTTPTransport)

    def keep(client, r: httpx.Response, stream: bool) -> None:
        if r.status_code >= 400 and not stream and isinstance(getattr(client, "_transport", None), network):
            _keep_answer(r.status_code, r.request.method, str(r.request.url), r.headers, r.content)

    def send(self, request, **kwargs):
        r = sync(self, request, **kwargs)
        keep(self, r, kwargs.get("stream", False))
        return r

    async def asend(self, request, **kwargs):
        r = await asynchronous(self, request, **kwargs)
        keep(self, r, kwargs.get("stream", False))
        return r

    def rsend(self, request, **kwargs):
        r = session(self, request, **kwargs)
        if r.status_code >= 400 and not kwargs.get("stream"):
            _keep_answer(r.status_code, request.method, request.url, r.headers, r.content)
        return r

    httpx.Client.send, httpx.AsyncClient.send, requests.Session.send = send, asend, rsend
    _capturing = True
    try:
        yield
    finally:
        httpx.Client.send, httpx.AsyncClient.send, requests.Session.send = sync, asynchronous, session
        _capturing = False


def check(kube, temp_dir: Path) -> str:
    """The session's end: grep everything captured for every remembered secret; fail naming where
    one is. Returns (and keeps in `last_summary`) one line: what was read."""
    global last_summary
    started = time.monotonic()
    keep_events(kube, None)
    for token in sorted(temp_dir.glob("**/pods/*/volumes/*/token")):
        remember(token.read_text(errors="replace").strip(), f"pod {token.parts[-4]}'s projected token")
    logs = sorted({p for p in temp_dir.rglob("*") if p.suffix in LOG_SUFFIXES and p.is_file()}
                  | {p for p in _logs if p.is_file()})
    out = temp_dir / "secrets-seen"  # what was captured, for a look afterwards
    out.mkdir(exist_ok=True)
    (out / "events.jsonl").write_text("".join(text + "\n" for _, text in _events.values()))
    (out / "error-bodies.txt").write_text("".join(f"--- {where}\n{body.decode(errors='replace')}\n"
                                                  for where, body in _bodies))

    def sources():
        for path in logs:
            shown = path.relative_to(temp_dir) if path.is_relative_to(temp_dir) else path
            yield f"log {shown}", path.read_bytes()
        yield from _events.values()
        yield from _bodies

    leaks, _, size = find_leaks(_secrets, sources())
    last_summary = summary(len(_secrets), {"log files": len(logs), "Events": len(_events),
                                           "error answers": len(_bodies)}, size, time.monotonic() - started)
    if leaks:
        raise AssertionError(report(leaks))
    return last_summary
