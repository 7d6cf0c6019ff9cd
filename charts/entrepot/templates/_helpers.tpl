{{/* Chart name, overridable. */}}
{{- define "entrepot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every resource name: "<release>-<name>", or the release name alone
when it already contains the chart name. Kept to 63 characters (DNS label).
*/}}
{{- define "entrepot.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "entrepot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: stable for the life of a release (a Deployment selector is
immutable). The component label keeps the operator's pods apart from the
runner pods the operator creates, which share name/part-of labels.
*/}}
{{- define "entrepot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "entrepot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels on every object of the chart. */}}
{{- define "entrepot.labels" -}}
{{ include "entrepot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: entrepot
helm.sh/chart: {{ include "entrepot.chart" . }}
{{- end }}

{{- define "entrepot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "entrepot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}: a digest pins the image
(repository@sha256:...); otherwise repository:tag, the tag defaulting to the
chart's appVersion. Call with (dict "image" .Values.image "root" $).
*/}}
{{- define "entrepot.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/*
Whether the operator elects a leader: leaderElection.enabled. More than one
replica without it would have every replica reconcile, so that is refused.
*/}}
{{- define "entrepot.leaderElection" -}}
{{- if and (gt (int .Values.operator.replicas) 1) (not .Values.operator.leaderElection.enabled) }}
{{- fail "operator.replicas > 1 needs operator.leaderElection.enabled: true (without a Lease every replica would reconcile)" }}
{{- end }}
{{- if .Values.operator.leaderElection.enabled }}true{{ end }}
{{- end }}

{{/* Where the runner defaults file is mounted in the operator pod. */}}
{{- define "entrepot.runnerDefaultsDir" -}}/etc/entrepot{{- end }}

{{/*
The runner defaults file (runner-defaults.yaml), as the operator reads it with
--runner-defaults: image, imagePullPolicy, resources, queue.{storageClassName,size},
networkPolicy (with the operator's own namespace and pod labels), and
nats.{url,replicas,credentialsSecret}.
Optional fields are left out when empty.
*/}}
{{- define "entrepot.runnerDefaults" -}}
image: {{ include "entrepot.imageRef" (dict "image" .Values.runner.image "root" $) | quote }}
{{- with .Values.runner.image.pullPolicy }}
imagePullPolicy: {{ . }}
{{- end }}
{{- with .Values.runner.resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.runner.networkPolicy }}
networkPolicy:
  enabled: {{ .enabled }}
  # The operator's pods: they read each runner's /v1/status.
  operator:
    namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: {{ $.Release.Namespace }}
    podSelector:
      matchLabels:
        {{- include "entrepot.selectorLabels" $ | nindent 8 }}
  {{- with .webhookFrom }}
  webhookFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .adminFrom }}
  adminFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- with (.Values.runner.tracing).otlpEndpoint }}
otlpEndpoint: {{ . | quote }}
{{- end }}
{{- if or .Values.runner.queue.storageClassName .Values.runner.queue.size }}
queue:
  {{- with .Values.runner.queue.storageClassName }}
  storageClassName: {{ . | quote }}
  {{- end }}
  {{- with .Values.runner.queue.size }}
  size: {{ . | quote }}
  {{- end }}
{{- end }}
# What a SyncFlow with its queue in NATS JetStream gets unless it says otherwise.
nats:
  {{- with .Values.nats.url }}
  url: {{ . | quote }}
  {{- end }}
  replicas: {{ .Values.nats.replicas }}
  {{- with .Values.nats.credentialsSecret }}
  credentialsSecret:
    name: {{ .name | quote }}
    key: {{ .key | quote }}
  {{- end }}
{{- end }}

{{/*
Where the operator's own NATS credentials (nats.operatorCredentialsSecret) or
token (nats.operatorTokenSecret) are mounted, and the file's path; empty when
neither is set. At most one of the two.
*/}}
{{- define "entrepot.natsAuthDir" -}}/var/run/secrets/entrepot-nats{{- end }}
{{- define "entrepot.natsAuth" -}}
{{- if and .Values.nats.operatorCredentialsSecret .Values.nats.operatorTokenSecret }}
{{- fail "set at most one of nats.operatorCredentialsSecret and nats.operatorTokenSecret" }}
{{- end }}
{{- with .Values.nats.operatorCredentialsSecret }}
{{- dict "env" "ENTREPOT_NATS_CREDENTIALS_FILE" "file" "operator.creds" "name" .name "key" .key | toJson }}
{{- end }}
{{- with .Values.nats.operatorTokenSecret }}
{{- dict "env" "ENTREPOT_NATS_TOKEN_FILE" "file" "token" "name" .name "key" .key | toJson }}
{{- end }}
{{- end }}

{{/*
The operator's permissions, shared by the ClusterRole (all namespaces) and the
Role (watchNamespace). Least privilege; on Secrets only create: the operator
creates each flow's admin token once (409 = already there) and never reads one.
Runner pods mount the Secrets they reference, which needs no permission of it.
scripts/chart_policy.py holds the same list and fails on any difference.
*/}}
{{- define "entrepot.operatorRules" -}}
# The four Entrepot kinds: watched; patched and updated for finalizers and annotations.
- apiGroups: ["entrepot.io"]
  resources: ["connectors", "mappings", "syncflows", "reconcileschedules"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["entrepot.io"]
  resources: ["connectors/status", "mappings/status", "syncflows/status", "reconcileschedules/status"]
  verbs: ["get", "patch", "update"]
# Children carry owner references with blockOwnerDeletion; clusters running the
# OwnerReferencesPermissionEnforcement admission plugin (OpenShift, some
# managed clusters) require update on the owner's finalizers for that.
- apiGroups: ["entrepot.io"]
  resources: ["connectors/finalizers", "mappings/finalizers", "syncflows/finalizers", "reconcileschedules/finalizers"]
  verbs: ["update"]
# What a SyncFlow becomes: its runner's ConfigMap, Service and queue volume claim.
- apiGroups: [""]
  resources: ["configmaps", "services", "persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Runner pods: read only, to report why a runner is not available.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Runner workloads: a Deployment, or a StatefulSet when the queue needs a volume.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Batch SyncFlows and ReconcileSchedules run as CronJobs; their Jobs are only read.
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch"]
# Each flow's admin token, created once; never get, list, watch or update.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create"]
# Each flow's NetworkPolicy (removed again when the chart disables it).
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# A runner with more than one replica keeps one up during node drains.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Events for `kubectl describe`, through either Events API.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
