"""Stand-in Verda instances become kwok Nodes in the sandbox, as a real instance's node would join.

On Verda, an instance's startup script installs a kubelet that registers the
instance as a Node: named after its hostname, ``spec.providerID``
``datacrunch://<instance id>``, with its group's labels and taints (kubelet
``--node-labels`` / ``--register-with-taints``), the node-group and GPU-model
labels, and the machine's CPU, memory and GPUs as capacity. When the instance
is deleted its Node goes (the cloud controller's node lifecycle does that on a
real cluster).

`NodeBridge` plays both parts for the stand-in (tests/verda_standin.py): a
thread polls the stand-in's instances; a new one is marked ``running`` (it has
booted) and its Node created with kwok's annotation, so the sandbox's kwok
keeps it Ready and simulates the pods bound to it; an instance gone from the
stand-in has its Node deleted. What the Node carries comes from the instance
record and the cluster config's ``node_configs`` entry for the instance's
description (its group), not from the provider's template node: the test
compares the two.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import yaml

from dask_operator import constants as c
from dask_operator.sandbox.kwok import MANAGED, NODE_ANNOTATION
from verda_standin import INSTANCE_TYPES, VerdaStandIn

PROVIDER_ID_PREFIX = "datacrunch://"
BOOTING = {"new", "ordered", "validating", "provisioning"}
MAX_PODS = "110"


def gpu_model_label(model: str) -> str:
    """What the node's GPU discovery would label it with: the model, label-safe (H100 SXM5 -> H100_SXM5)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", model).strip("_.-")[:63]


def node_for(instance: dict, node_configs: dict) -> dict:
    """The Node that ``instance`` (a stand-in record) registers as, with its group's ``node_configs`` entry."""
    group = instance["description"]
    config = node_configs.get(group, {})
    model = next(t["model"] for t in INSTANCE_TYPES if t["instance_type"] == instance["instance_type"])
    gpus = instance["gpu"]["number_of_gpus"]
    if config.get("override_num_gpus") is not None:  # MiG: the device plugin advertises slices
        gpus = config["override_num_gpus"]
    capacity = {"cpu": str(instance["cpu"]["number_of_cores"]),
                "memory": f"{instance['memory']['size_in_gigabytes']}Gi", "pods": MAX_PODS}
    name = instance["hostname"]
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
              "type": "kwok", "node.kubernetes.io/instance-type": instance["instance_type"],
              "topology.kubernetes.io/region": instance["location"]}
    if group in node_configs:
        labels[c.LABEL_NODE_GROUP] = group
    if gpus:
        capacity["nvidia.com/gpu"] = str(gpus)
        labels[c.GPU_LABEL] = gpu_model_label(model)
    labels.update(config.get("labels") or {})
    taints = [{"key": t["key"], "effect": t["effect"], **({"value": t["value"]} if t.get("value") else {})}
              for t in config.get("taints") or []]
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {NODE_ANNOTATION: MANAGED, "node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"providerID": f"{PROVIDER_ID_PREFIX}{instance['id']}", **({"taints": taints} if taints else {})},
        "status": {"capacity": capacity, "allocatable": dict(capacity)},
    }


class NodeBridge:
    """Polls the stand-in every ``interval`` seconds; joins new instances as Nodes, removes deleted ones."""

    def __init__(self, api: VerdaStandIn, kubeconfig: Path, node_configs: dict, interval: float = 0.25) -> None:
        self.api = api
        self.kubeconfig = kubeconfig
        self.node_configs = node_configs
        self.interval = interval
        self.nodes: dict[str, str] = {}  # instance id -> Node name, for Nodes that exist
        self.joined: dict[str, float] = {}  # instance id -> monotonic time its Node was created
        self.removed: dict[str, float] = {}  # instance id -> monotonic time its Node was deleted
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="verda-node-bridge")

    def start(self) -> NodeBridge:
        self._thread.start()
        return self

    def check(self) -> None:
        """Fail if the bridge could not create or delete a Node."""
        if self.errors:
            raise AssertionError("the node bridge failed: " + "; ".join(self.errors[-3:]))

    def _kubectl(self, *args: str, input: str | None = None) -> None:
        result = subprocess.run(["kubectl", f"--kubeconfig={self.kubeconfig}", *args], input=input,
                                capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args[:2])}: {result.stderr.strip()}")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as e:  # recorded for check(); keep bridging
                self.errors.append(f"{type(e).__name__}: {e}")
            self._stop.wait(self.interval)

    def sync(self) -> None:
        """One pass: join booted instances, remove the Nodes of deleted ones."""
        with self.api.lock:
            instances = {iid: dict(i) for iid, i in self.api.instances.items()}
        for iid, instance in instances.items():
            if iid in self.nodes:
                continue
            if instance["status"] in BOOTING:
                self.api.set_status(iid, "running")  # booted; its startup script joins the node
                instance["status"] = "running"
            if instance["status"] == "running":
                self._kubectl("apply", "-f", "-", input=yaml.safe_dump(node_for(instance, self.node_configs)))
                self.nodes[iid] = instance["hostname"]
                self.joined[iid] = time.monotonic()
        for iid in [i for i in self.nodes if i not in instances]:
            self._kubectl("delete", "node", self.nodes[iid], "--ignore-not-found", "--wait=false")
            del self.nodes[iid]
            self.removed[iid] = time.monotonic()

    def stop(self) -> None:
        """Stop polling and delete every Node the bridge made that still exists."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
        for iid, name in list(self.nodes.items()):
            self._kubectl("delete", "node", name, "--ignore-not-found", "--wait=true", "--timeout=60s")
            del self.nodes[iid]


def main(argv: list[str] | None = None) -> int:
    """``python tests/verda_nodes.py --config cluster-config.json``: the stand-in Verda API with this
    bridge, against $KUBECONFIG, until Ctrl-C (README: GPU nodes on Verda, worked example)."""
    import argparse
    import json
    import os
    import signal

    p = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, required=True, help="the provider's cluster config (node_configs)")
    p.add_argument("--kubeconfig", type=Path, default=os.environ.get("KUBECONFIG"))
    p.add_argument("--no-spot", action="append", default=[], metavar="TYPE:LOCATION",
                   help="no spot capacity for this instance type in this location (repeatable)")
    args = p.parse_args(argv)
    if not args.kubeconfig:
        p.error("--kubeconfig or $KUBECONFIG is needed")
    api = VerdaStandIn(capacity={(*spec.split(":", 1), True): 0 for spec in args.no_spot})
    url = api.start()
    bridge = NodeBridge(api, args.kubeconfig, json.loads(args.config.read_text())["node_configs"]).start()
    print(f"export VERDA_API_URL={url} DATACRUNCH_CLIENT_ID={api.client_id} "
          f"DATACRUNCH_CLIENT_SECRET={api.client_secret}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1):
            bridge.check()
    except KeyboardInterrupt:
        pass
    finally:
        bridge.stop()
        api.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
