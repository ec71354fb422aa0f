{{- define "customer-routing.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's prefix for every object: "<release>-<chart>", unless they are equal. */}}
{{- define "customer-routing.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "customer-routing.labels" -}}
app.kubernetes.io/name: {{ include "customer-routing.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "customer-routing.databaseSecret" -}}
{{- .Values.postgresql.existingSecret | default (printf "%s-database" (include "customer-routing.fullname" .)) -}}
{{- end -}}

{{/*
A volume of files from a Secret (dict "secret" <its name> "files" (dict <file> <its key>)):
every Secret the pods mount is mounted through here, so every such file (a private key
among them) is read by its owner and its group only, 0440, never by any user of the
container as Kubernetes' default 0644 lets. The files' owner is root; the kubelet gives
them the pod's fsGroup as group, the services' group (deployments.yaml), so the services
still read them. Written as 0o440, rendered in decimal (288): YAML 1.2 would read a
leading zero as decimal, 440.
*/}}
{{- define "customer-routing.secretVolume" -}}
secret:
  secretName: {{ .secret | quote }}
  defaultMode: {{ 0o440 }}
  items:
    {{- range $file, $key := .files }}
    - key: {{ $key | quote }}
      path: {{ $file }}
    {{- end }}
{{- end -}}
