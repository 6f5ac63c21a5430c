"""Volumes for the pod runner's pods: the ServiceAccount token, as a kubelet projects it.

Only volume mounts under `/run` (and so `/var/run`) are mounted: each pod gets
a private tmpfs on `/run` in its own mount namespace (`ip netns exec` makes
one), where mount points can be created without touching the host. That is
where `/var/run/secrets/kubernetes.io/serviceaccount` lives. Mounts elsewhere
(an emptyDir on `/tmp`, say) are not made: the pod sees the host's directory,
which also holds the Python environment the runner runs commands from.

Supported volume sources: `projected` with `serviceAccountToken` (a
TokenRequest bound to the pod, refreshed at 80 % of its lifetime, as the
kubelet does), `configMap` and `downwardAPI` (`metadata.*` fields); `secret`
and `configMap` volumes; `emptyDir`.
"""

from __future__ import annotations

import base64
import json
import logging
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MOUNT_ROOT = "/run"
DEFAULT_TOKEN_SECONDS = 3600


class VolumeNotReady(Exception):
    """A source the volume needs does not exist yet (the pod waits, as with a kubelet)."""


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool


def _canonical(mount_path: str) -> str:
    """`/var/run/...` as `/run/...` (/var/run is a link to /run)."""
    return "/run" + mount_path[len("/var/run"):] if mount_path.startswith("/var/run/") else mount_path


def _mounted_here(mount_path: str) -> bool:
    path = _canonical(mount_path)
    return path == MOUNT_ROOT or path.startswith(MOUNT_ROOT + "/")


class PodVolumes:
    """Writes a pod's volumes under `directory` and says where to mount them."""

    def __init__(self, api: Any, pod: dict, directory: Path) -> None:
        self.api = api
        self.pod = pod
        self.dir = directory
        self.refresh_at: float | None = None  # loop time at which a token needs renewing

    def mounts(self) -> list[Mount]:
        container = self.pod["spec"]["containers"][0]
        result = []
        for vm in container.get("volumeMounts") or ():
            if not _mounted_here(vm["mountPath"]):
                log.debug("%s: not mounting %s (outside %s)", self.pod["metadata"]["name"], vm["mountPath"],
                          MOUNT_ROOT)
                continue
            result.append(Mount(self.dir / vm["name"], _canonical(vm["mountPath"]), bool(vm.get("readOnly"))))
        return result

    async def write(self, now: float) -> None:
        """(Re)write every mounted volume's files; raises VolumeNotReady."""
        wanted = {m.source.name for m in self.mounts()}
        self.refresh_at = None
        for volume in self.pod["spec"].get("volumes") or ():
            if volume["name"] not in wanted:
                continue
            target = self.dir / volume["name"]
            target.mkdir(parents=True, exist_ok=True)
            for rel, content in (await self._files(volume, now)).items():
                path = target / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_text(content)
                tmp.replace(path)  # atomic, like the kubelet's symlink swap

    async def _files(self, volume: dict, now: float) -> dict[str, str]:
        if "projected" in volume:
            files: dict[str, str] = {}
            for source in volume["projected"].get("sources") or ():
                files.update(await self._source(source, now))
            return files
        if "configMap" in volume or "secret" in volume:
            return await self._source(volume, now)
        if "emptyDir" in volume:
            return {}
        raise VolumeNotReady(f"volume {volume['name']}: unsupported source {sorted(volume)}")

    async def _source(self, source: dict, now: float) -> dict[str, str]:
        ns = self.pod["metadata"]["namespace"]
        if "serviceAccountToken" in source:
            return {source["serviceAccountToken"]["path"]: await self._token(source["serviceAccountToken"], now)}
        if "configMap" in source:
            ref = source["configMap"]
            data = await self._get(f"configmaps/{ref['name']}", ns, ref.get("optional"))
            return _items(data.get("data") or {}, ref.get("items"))
        if "secret" in source:
            ref = source["secret"]
            name = ref.get("name") or ref.get("secretName")
            data = await self._get(f"secrets/{name}", ns, ref.get("optional"))
            decoded = {k: base64.b64decode(v).decode() for k, v in (data.get("data") or {}).items()}
            return _items(decoded, ref.get("items"))
        if "downwardAPI" in source:
            meta = self.pod["metadata"]
            return {
                item["path"]: str(meta.get(item["fieldRef"]["fieldPath"].split(".", 1)[1], ""))
                for item in source["downwardAPI"].get("items") or ()
                if item.get("fieldRef", {}).get("fieldPath", "").startswith("metadata.")
            }
        raise VolumeNotReady(f"unsupported projected source {sorted(source)}")

    async def _get(self, url: str, namespace: str, optional: bool | None) -> dict:
        async with self.api.call_api("GET", url=url, namespace=namespace, raise_for_status=False) as r:
            if r.status_code == 404:
                if optional:
                    return {}
                raise VolumeNotReady(f"{url} does not exist yet")
            r.raise_for_status()
            return r.json()

    async def _token(self, spec: dict, now: float) -> str:
        meta = self.pod["metadata"]
        seconds = int(spec.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {
            "expirationSeconds": seconds,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
            **({"audiences": [spec["audience"]]} if spec.get("audience") else {}),
        }}
        account = self.pod["spec"].get("serviceAccountName") or "default"
        async with self.api.call_api("POST", url=f"serviceaccounts/{account}/token", namespace=meta["namespace"],
                                     content=json.dumps(body)) as r:
            token = r.json()["status"]["token"]
        due = now + 0.8 * seconds
        self.refresh_at = due if self.refresh_at is None else min(self.refresh_at, due)
        return token


def _items(data: dict[str, str], items: list[dict] | None) -> dict[str, str]:
    if not items:
        return dict(data)
    return {item["path"]: data[item["key"]] for item in items if item["key"] in data}


def mount_wrapper(mounts: list[Mount], argv: list[str]) -> list[str]:
    """argv that, inside the pod's mount namespace, puts a tmpfs on /run, mounts
    the volumes and then execs `argv`."""
    if not mounts:
        return argv
    lines = ["set -e", f"mount -t tmpfs -o mode=0755 tmpfs {MOUNT_ROOT}"]
    for m in mounts:
        target = shlex.quote(m.target)
        lines += [f"mkdir -p {target}", f"mount --bind {shlex.quote(str(m.source))} {target}"]
        if m.read_only:
            lines.append(f"mount -o remount,bind,ro {target}")
    lines.append('exec "$@"')
    return ["sh", "-c", "\n".join(lines), "sh", *argv]
