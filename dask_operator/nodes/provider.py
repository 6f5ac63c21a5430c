"""The node groups' state and actions, behind the gRPC edge.

The instance list comes from Verda at each ``refresh()`` (the autoscaler
calls Refresh before every loop) and is kept up to date with our own creates
and deletes in between. A group's instances are those whose description is the
group's name and whose hostname starts with ``<name>-`` (seed 002's naming);
its target size is how many of them are not going away, so target size, the
instance list and Verda cannot drift apart.

Creating: the offers ``instance_option`` names (spot, on-demand) are tried in
its order, skipping those Verda says it has no capacity for; a create refused
for capacity marks that offer unavailable and moves on to the next. Any other
refusal (quota, a bad image, an outage) ends the scale-up with an error, which
the autoscaler counts as a failed scale-up: it backs the group off.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from .. import constants as c
from ..core import nodegroups as ng
from ..errors import NodeGroupError, VerdaError
from ..core.startup_scripts import ScriptRequest
from .cloud import CAPACITY, UNAVAILABLE, Instance, VerdaCloud
from . import pricing
from .script_source import ScriptSource

log = logging.getLogger(__name__)

CREATE_PARALLELISM = 8  # instances created at once within one IncreaseSize
OFFER = {True: "spot", False: "on-demand"}

# Error kinds of the provider itself (VerdaError brings Verda's).
BAD_REQUEST, UNKNOWN_GROUP, PRECONDITION, NOT_OURS = "bad_request", "unknown_group", "precondition", "not_ours"


class Provider:
    def __init__(self, groups: Mapping[str, ng.NodeGroup], cloud: VerdaCloud,
                 suffix: Callable[[], str] = lambda: secrets.token_hex(4),
                 scripts: ScriptSource | None = None) -> None:
        self.groups = dict(groups)
        self.cloud = cloud
        self.scripts = scripts
        self._suffix = suffix
        self._lock = threading.Lock()  # guards _instances
        self._group_locks = {name: threading.Lock() for name in self.groups}  # one resize at a time
        self._instances: dict[str, Instance] | None = None

    # ------------------------------------------------------------ state

    def refresh(self) -> None:
        """Re-read every instance from Verda."""
        listed = {i.id: i for i in self.cloud.instances()}
        with self._lock:
            self._instances = listed

    def _known(self) -> dict[str, Instance]:
        if self._instances is None:
            self.refresh()
        with self._lock:
            return dict(self._instances or {})

    def _remember(self, instance: Instance) -> None:
        with self._lock:
            if self._instances is not None:
                self._instances[instance.id] = instance

    def group(self, name: str) -> ng.NodeGroup:
        if name not in self.groups:
            raise NodeGroupError(UNKNOWN_GROUP, f"no node group {name!r}; this provider has "
                                                f"{', '.join(sorted(self.groups))}")
        return self.groups[name]

    def members(self, name: str) -> list[Instance]:
        group = self.group(name)
        return sorted((i for i in self._known().values() if group.owns(i.hostname, i.description)),
                      key=lambda i: (i.created_at, i.id))

    def target_size(self, name: str) -> int:
        return sum(ng.counts_toward_target(i.status) for i in self.members(name))

    def group_of(self, provider_id: str, node_name: str = "") -> ng.NodeGroup | None:
        """The group of a node: by its provider ID, or by hostname when it has none."""
        instance = self._instance_of(provider_id, node_name)
        if instance is None:
            return None
        return next((g for g in self.groups.values() if g.owns(instance.hostname, instance.description)), None)

    def _instance_of(self, provider_id: str, node_name: str) -> Instance | None:
        known = self._known()
        if provider_id:
            return known.get(ng.instance_id(provider_id) or "")
        return next((i for i in known.values() if node_name and i.hostname == node_name), None)

    # ------------------------------------------------------------ scaling

    def increase(self, name: str, delta: int) -> list[Instance]:
        """Create ``delta`` instances; an error if any of them could not be created."""
        group = self.group(name)
        if delta <= 0:
            raise NodeGroupError(BAD_REQUEST, f"delta must be positive, got {delta}")
        with self._group_locks[name]:
            size = self.target_size(name)
            if size + delta > group.max_size:
                raise NodeGroupError(PRECONDITION, f"node group {name}: {size} + {delta} is over its maximum "
                                                   f"{group.max_size}")
            itype = self.instance_type(group)
            with ThreadPoolExecutor(max_workers=min(delta, CREATE_PARALLELISM)) as pool:
                outcomes = list(pool.map(lambda _: self._try_create(group, itype, delta), range(delta)))
        created = [o for o in outcomes if isinstance(o, Instance)]
        failures = [o for o in outcomes if isinstance(o, Exception)]
        if failures:
            first = failures[0]
            message = f"node group {name}: created {len(created)} of {delta} instances: {first}"
            raise (VerdaError(first.kind, message, first.code) if isinstance(first, VerdaError)
                   else NodeGroupError(first.kind, message))
        return created

    def _try_create(self, group: ng.NodeGroup, itype: ng.InstanceType, delta: int) -> Instance | Exception:
        try:
            return self._create(group, itype, delta)
        except (VerdaError, NodeGroupError) as e:
            return e

    def _create(self, group: ng.NodeGroup, itype: ng.InstanceType, delta: int) -> Instance:
        config, option = group.config, group.config.instance_option
        available = {s: self.cloud.available(itype.name, group.location, s) for s in ng.INSTANCE_OPTIONS[option]}
        offers = ng.offers_to_try(option, available)
        if not offers:
            raise VerdaError(CAPACITY, f"Verda reports no {' or '.join(OFFER[s] for s in available)} capacity "
                                       f"for {itype.name} in {group.location} (instance_option {option})")
        host, script = ng.new_instance_names(group.name, self._suffix())
        script_id = self._script_for(group, itype, host, script)
        refusals = []
        try:
            for is_spot in offers:
                try:
                    instance = self.cloud.create_instance(
                        instance_type=itype.name, image=config.image_type, hostname=host, description=group.name,
                        location=group.location, is_spot=is_spot, ssh_key_ids=config.ssh_key_ids,
                        disk_size_gb=config.disk_size_gb, startup_script_id=script_id,
                        pricing=ng.deploy_pricing(config, is_spot))
                except VerdaError as e:
                    if e.kind != CAPACITY:
                        raise
                    self.cloud.mark_unavailable(itype.name, group.location, is_spot)
                    refusals.append(f"{OFFER[is_spot]}: {e}")
                    log.info("node group %s: Verda has no %s capacity for %s in %s; %s", group.name, OFFER[is_spot],
                             itype.name, group.location, "trying the next offer" if is_spot != offers[-1]
                             else f"no offer left (instance_option {option})")
                    continue
                self._remember(instance)
                log.info("node group %s: created %s instance %s (%s) in %s: the autoscaler asked for %d more",
                         group.name, OFFER[is_spot], instance.id, host, group.location, delta)
                return instance
            raise VerdaError(CAPACITY, f"no capacity for {itype.name} in {group.location} "
                                       f"(instance_option {option}): {'; '.join(refusals)}")
        except BaseException as e:
            if script_id is not None and isinstance(e, VerdaError) and e.kind == UNAVAILABLE:
                log.warning("node group %s: kept startup script %s: the create of %s may have succeeded unseen",
                            group.name, script_id, host)
            elif script_id is not None:
                self._forget_scripts([script_id])
            raise

    def _script_for(self, group: ng.NodeGroup, itype: ng.InstanceType, host: str, name: str) -> str | None:
        """The id of the new instance's startup script: the group's own (``startup_script_base64``, which
        overrides the server, as in seed 002), else one the startup-script server uploads for it, else none."""
        if group.config.startup_script is not None:
            return self.cloud.create_script(name, group.config.startup_script)
        if self.scripts is not None:
            return self.scripts.fetch(ScriptRequest(name, host, group.name, itype.name, group.location))
        return None

    def delete(self, name: str, nodes: Iterable[tuple[str, str]]) -> list[Instance]:
        """Delete the instances of ``nodes`` ((provider ID, node name) pairs), with their OS volumes."""
        group = self.group(name)
        with self._group_locks[name]:
            doomed = []
            for provider_id, node_name in nodes:
                instance = self._instance_of(provider_id, node_name)
                if instance is None or not group.owns(instance.hostname, instance.description):
                    raise NodeGroupError(NOT_OURS, f"node {node_name or '?'} ({provider_id or 'no provider ID'}) "
                                                   f"is not an instance of node group {name}")
                doomed.append(instance)
            self._delete(group, [i for i in doomed if ng.counts_toward_target(i.status)], "the autoscaler removes them")
        return doomed

    def decrease_target(self, name: str, delta: int) -> list[Instance]:
        """Cancel ``-delta`` requested nodes: delete the newest instances still being created."""
        group = self.group(name)
        if delta >= 0:
            raise NodeGroupError(BAD_REQUEST, f"delta must be negative, got {delta}")
        with self._group_locks[name]:
            pending = [i for i in self.members(name) if ng.instance_state(i.status) == (ng.CREATING, None)]
            if len(pending) < -delta:
                raise NodeGroupError(PRECONDITION, f"node group {name}: only {len(pending)} instances are still "
                                                   f"being created, cannot cancel {-delta}; delete nodes instead")
            doomed = pending[::-1][:-delta]
            self._delete(group, doomed, f"the autoscaler lowers the target size by {-delta}")
        return doomed

    def _delete(self, group: ng.NodeGroup, doomed: list[Instance], reason: str) -> None:
        if not doomed:
            return
        ids = [i.id for i in doomed]
        self.cloud.delete_instances(ids, [i.os_volume_id for i in doomed if i.os_volume_id])
        for instance in doomed:
            self._remember(replace(instance, status="deleting"))
        log.info("node group %s: deleted instances %s with their OS volumes: %s", group.name, ", ".join(ids), reason)
        self._forget_scripts([i.startup_script_id for i in doomed if i.startup_script_id])

    def _forget_scripts(self, ids: list[str]) -> None:
        """Delete startup scripts nobody will run; they may already be gone (a script deletes itself)."""
        try:
            self.cloud.delete_scripts(ids)
        except VerdaError as e:
            log.warning("could not delete startup scripts %s: %s", ", ".join(ids), e)

    # ------------------------------------------------------------ templates, GPUs, prices

    def instance_type(self, group: ng.NodeGroup) -> ng.InstanceType:
        itype = self.cloud.instance_types().get(group.instance_type)
        if itype is None:
            raise NodeGroupError(PRECONDITION, f"node group {group.name}: Verda has no instance type "
                                               f"{group.instance_type!r}")
        return itype

    def template(self, name: str) -> dict:
        group = self.group(name)
        return ng.template_node(group, self.instance_type(group), ng.new_instance_names(name, "template")[0])

    def gpu_types(self) -> list[str]:
        return sorted({ng.gpu_label_value(t.gpu_model) for t in self.cloud.instance_types().values()
                       if t.gpus and ng.gpu_label_value(t.gpu_model)})

    def node_price(self, provider_id: str, node_name: str, labels: Mapping[str, str], hours: float) -> float:
        """A node's price over ``hours``: its instance's offer, or for a template its group's first offer."""
        types = self.cloud.instance_types()
        instance = self._instance_of(provider_id, node_name) if provider_id else None
        if instance is not None and instance.instance_type in types:
            return pricing.hourly_price(types[instance.instance_type], instance.is_spot) * hours
        group = self.groups.get(labels.get(c.LABEL_NODE_GROUP, ""))
        if group is None:
            raise NodeGroupError(NOT_OURS, f"node {node_name or provider_id} is not in a node group of this provider")
        return pricing.hourly_price(self.instance_type(group), pricing.first_offer_is_spot(group.config)) * hours

    def pod_price(self, requests: Mapping[str, float], hours: float) -> float:
        types = self.cloud.instance_types()
        pairs = [(g, types[g.instance_type]) for g in self.groups.values() if g.instance_type in types]
        return pricing.pod_price(requests, pairs, hours)
