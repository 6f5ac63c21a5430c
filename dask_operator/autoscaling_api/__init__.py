"""The autoscaling API (seed 004): autoscalers for Deployments, StatefulSets,
ReplicaSets and our Clusters, each one a real `autoscaling/v2`
HorizontalPodAutoscaler.

The API keeps no state: an autoscaler *is* its HPA (labelled
`app.kubernetes.io/managed-by=dask-operator-autoscaling-api`), its id is
`<namespace>.<hpa name>`, and its status is read from the HPA and the HPA
controller's Events at every request, so restarts lose nothing and
`kubectl get hpa` shows what the API made. Kubernetes' own HPA controller does
the scaling.

Layers, as in `dask_operator.api` (each module says its rules):
- `app`: the edge. Routes parse, call `service`, map errors to HTTP in one
  table (`ERRORS`); bodies and error bodies are seed 004's.
- `service`: one method per operation; `access`: who may (SubjectAccessReview
  on horizontalpodautoscalers, cached); `kube`: the Kubernetes calls.
- `dask_operator.core.autoscaler_spec` / `autoscaler_status`: the pure
  mapping, request -> HPA and HPA -> status body.
- `openapi`: the document served at /openapi.json; `main`: flags and wiring.
Authentication is the cluster-scaler API's `Authenticator` (TokenReview
bearer tokens, hashed API keys).
"""
