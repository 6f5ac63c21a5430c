"""Names, label and annotation keys shared by the operator, its manifests and the sandbox."""

GROUP = "dask.charmtx.com"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Cluster"
PLURAL = "clusters"
CRD_NAME = f"{PLURAL}.{GROUP}"

# Labels put on every child object.
LABEL_PREFIX = f"{GROUP}/"
LABEL_ROLE = f"{GROUP}/role"
LABEL_CLUSTER = f"{GROUP}/cluster"
ROLE_SCHEDULER = "scheduler"
ROLE_WORKER = "worker"

# The CRD's ceiling on spec.workers.replicas.
MAX_WORKERS = 10000

# Label on worker pods: a hash of the worker template they were made from. When
# the template changes, workers are replaced new-first, with at most this many
# percent (at least one pod) beyond the desired count while they are.
LABEL_TEMPLATE_HASH = f"{GROUP}/worker-template-hash"
MAX_SURGE_PERCENT = 25

# Annotation recording when the operator asked the scheduler to retire a worker.
ANNOTATION_RETIRING = f"{GROUP}/retiring-since"

# Dask ports and port names (the seed's ServiceMonitor scrapes "http-dashboard").
SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
WORKER_DASHBOARD_PORT = 8788
PORT_NAME_COMM = "tcp-comm"
PORT_NAME_DASHBOARD = "http-dashboard"

# Container defaults, used when a template leaves them out.
DEFAULT_IMAGE = "ghcr.io/dask/dask:latest"
DEFAULT_SCHEDULER_COMMAND = ("dask", "scheduler")
DEFAULT_WORKER_COMMAND = ("dask", "worker")
SCHEDULER_CONTAINER = "scheduler"
WORKER_CONTAINER = "worker"
SCHEDULER_HTTP_ROUTES = (
    "distributed.http.scheduler.prometheus",
    "distributed.http.scheduler.info",
    "distributed.http.scheduler.json",
    "distributed.http.health",
    "distributed.http.proxy",
    "distributed.http.statics",
    "distributed.http.scheduler.api",
)

# Condition types on Cluster status.
COND_AVAILABLE = "Available"
COND_PROGRESSING = "Progressing"
COND_SCALE_DOWN_BLOCKED = "ScaleDownBlocked"
COND_AUTOSCALING = "Autoscaling"  # spec.autoscaling: the operator's own autoscaler is in control

# The operator's own pods (deploy/) carry this label, value PART_OF.
LABEL_PART_OF = "app.kubernetes.io/part-of"
PART_OF = "dask-operator"

# Sandbox: pods with the role label run for real in the pod runner unless they
# carry this label, in which case kwok simulates them.
SANDBOX_SIMULATE_LABEL = "sandbox.dask.charmtx.com/simulate"

# Prometheus gauge the operator may export per Cluster (labels: namespace,
# cluster); adapter-rules/operator.yaml serves it as "desired_workers".
METRIC_CLUSTER_DESIRED_WORKERS = "dask_operator_cluster_desired_workers"

# Verda node groups (dask-operator nodes serve): labels on template and real nodes.
LABEL_NODE_GROUP = f"{GROUP}/node-group"
GPU_LABEL = f"{GROUP}/gpu-model"  # value: the instance type's GPU model, e.g. A100

# The autoscaling API (seed 004): every HPA it makes carries this label and value.
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
AUTOSCALING_API_MANAGER = "dask-operator-autoscaling-api"

# The startup-script server (dask-operator startup-scripts): a caller may have a
# script made when RBAC lets it `create` this resource of this API group in the
# server's namespace (a SubjectAccessReview; no such API is served).
STARTUP_SCRIPTS_GROUP = "verda.dask.charmtx.com"
STARTUP_SCRIPTS_RESOURCE = "startupscripts"
