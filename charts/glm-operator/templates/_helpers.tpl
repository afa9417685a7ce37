{{/*
Chart name, truncated to the 63 characters a label value may hold.
*/}}
{{- define "glm-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. The release name is not repeated when it already contains the
chart name (helm install glm-operator charts/glm-operator -> "glm-operator").
*/}}
{{- define "glm-operator.fullname" -}}
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

{{- define "glm-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "glm-operator.labels" -}}
helm.sh/chart: {{ include "glm-operator.chart" . }}
{{ include "glm-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: glm-operator
{{- end }}

{{/*
Selector labels: stable across upgrades (a Deployment's selector is immutable).
*/}}
{{- define "glm-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "glm-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "glm-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "glm-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Operator image: digest wins over tag; the tag defaults to the chart's appVersion.
*/}}
{{- define "glm-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
"true" when leader election is on: forced by leaderElection.enabled, otherwise exactly when
more than one replica runs (two unsynchronised controllers would fight over the same
children).
*/}}
{{- define "glm-operator.leaderElection" -}}
{{- if kindIs "bool" .Values.leaderElection.enabled }}
{{- ternary "true" "false" .Values.leaderElection.enabled }}
{{- else }}
{{- ternary "true" "false" (gt (int .Values.replicaCount) 1) }}
{{- end }}
{{- end }}

{{- define "glm-operator.leaseName" -}}
{{- default (printf "%s-leader" (include "glm-operator.fullname" .)) .Values.leaderElection.leaseName | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Rules for the namespaced resources the operator reconciles. Used by the ClusterRole (all
namespaces) and by each per-namespace Role (watchNamespaces). Keep in step with the list in
e2e/tests/chart.rs, which asserts this is exactly what is rendered.
*/}}
{{- define "glm-operator.workloadRules" -}}
# Exactly the calls the operator makes (docs/contract.md, "Operator RBAC").
- apiGroups: ["serving.glm.dev"]
  resources: ["glmdeployments"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["serving.glm.dev"]
  resources: ["glmdeployments/status"]
  verbs: ["patch"]
# Owner references with blockOwnerDeletion need this where the
# OwnerReferencesPermissionEnforcement admission plugin is on (e.g. OpenShift).
- apiGroups: ["serving.glm.dev"]
  resources: ["glmdeployments/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["patch"]
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
