{{- define "floe-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "floe-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "floe-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "floe-operator.selectorLabels" -}}
app.kubernetes.io/name: floe-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "floe-operator.labels" -}}
{{ include "floe-operator.selectorLabels" . }}
app.kubernetes.io/part-of: floe
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The rules the operator needs on FloeClusters and what it renders (see deploy/rbac.yaml). */}}
{{- define "floe-operator.rules" -}}
- apiGroups: ["floe.dev"]
  resources: ["floeclusters"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["floe.dev"]
  resources: ["floeclusters/status", "floeclusters/scale"]
  verbs: ["get", "update", "patch"]
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "update", "patch", "delete"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
