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
The operator's permissions, shared by the ClusterRole (all namespaces) and the
Role (watchNamespace). Least privilege; never Secrets: runner pods get secret
values through secretKeyRef, which needs no permission of the operator.
Issue 4 will add statefulsets (apps), poddisruptionbudgets (policy) and
cronjobs (batch) here, with the same verbs as deployments.
*/}}
{{- define "entrepot.operatorRules" -}}
# The four Entrepot kinds: watched, and patched for finalizers and annotations.
- apiGroups: ["entrepot.io"]
  resources: ["connectors", "mappings", "syncflows", "reconcileschedules"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["entrepot.io"]
  resources: ["connectors/status", "mappings/status", "syncflows/status", "reconcileschedules/status"]
  verbs: ["get", "patch", "update"]
# Children carry owner references with blockOwnerDeletion; clusters running the
# OwnerReferencesPermissionEnforcement admission plugin (OpenShift, some
# managed clusters) require update on the owner's finalizers for that.
- apiGroups: ["entrepot.io"]
  resources: ["connectors/finalizers", "mappings/finalizers", "syncflows/finalizers", "reconcileschedules/finalizers"]
  verbs: ["update"]
# What a SyncFlow becomes: its runner's ConfigMap, Deployment and Service.
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Events for `kubectl describe`, through either Events API.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
