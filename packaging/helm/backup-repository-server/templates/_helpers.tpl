{{/* Names and labels */}}
{{- define "br.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "br.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "br.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "br.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "br.selectorLabels" -}}
app.kubernetes.io/name: {{ include "br.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "br.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "br.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "br.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "br.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "br.secretName" -}}
{{- default (printf "%s-credentials" (include "br.fullname" .)) .Values.secrets.name }}
{{- end }}

{{- define "br.secretsType" -}}
{{- default .Values.secrets.type .Values.secretsType }}
{{- end }}

{{/* The image, never :latest by default */}}
{{- define "br.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* PostgreSQL configured: database.user, or the Go chart's BR_DB_USERNAME in secrets.spec or env */}}
{{- define "br.postgres" -}}
{{- if or .Values.database.user (hasKey .Values.secrets.spec "BR_DB_USERNAME") (hasKey .Values.env "BR_DB_USERNAME") }}true{{ end }}
{{- end }}

{{/* An object store configured: storage.url, or the Go chart's env.BR_STORAGE_DRIVER_URL, not file:// */}}
{{- define "br.objectStore" -}}
{{- $url := default (get .Values.env "BR_STORAGE_DRIVER_URL" | default "") .Values.storage.url }}
{{- if and $url (not (hasPrefix "file:" $url)) }}true{{ end }}
{{- end }}

{{/* Embedded: SQLite or local storage on the pod's volume */}}
{{- define "br.embedded" -}}
{{- if not (and (include "br.postgres" .) (include "br.objectStore" .)) }}true{{ end }}
{{- end }}

{{/* --shutdown-grace in seconds */}}
{{- define "br.shutdownSeconds" -}}
{{- $grace := .Values.settings.shutdownGrace | toString }}
{{- if hasSuffix "m" $grace }}{{ mul (trimSuffix "m" $grace | atoi) 60 }}
{{- else if hasSuffix "s" $grace }}{{ trimSuffix "s" $grace | atoi }}
{{- else }}{{ fail (printf "settings.shutdownGrace: %q: write seconds (30s) or minutes (5m)" $grace) }}
{{- end }}
{{- end }}

{{/* Seconds the pod may take to stop: terminationGracePeriodSeconds when set, else --shutdown-grace plus 15 s for
     the process to end after it */}}
{{- define "br.terminationGrace" -}}
{{- $shutdown := include "br.shutdownSeconds" . | int }}
{{- if .Values.terminationGracePeriodSeconds }}
{{- if le (int .Values.terminationGracePeriodSeconds) $shutdown }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be above settings.shutdownGrace (%ds): uploads in flight would be killed on a rollout" (int .Values.terminationGracePeriodSeconds) $shutdown) }}
{{- end }}
{{- .Values.terminationGracePeriodSeconds }}
{{- else }}
{{- add $shutdown 15 }}
{{- end }}
{{- end }}

{{/* Values that would make a wrong installation: refused with a message */}}
{{- define "br.validate" -}}
{{- if and (include "br.embedded" .) (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) }}
{{- fail "replicaCount > 1 and autoscaling need PostgreSQL (database.user) and an object store (storage.url): the embedded SQLite database and local storage live on the volume of one pod" }}
{{- end }}
{{- if eq (get .Values.secrets.spec "BR_JWT_SECRET_KEY" | default "") "changeme-important!" }}
{{- fail "secrets.spec.BR_JWT_SECRET_KEY is the Go chart's example value: remove it (a key is generated and kept) or set your own" }}
{{- end }}
{{- if not (has (include "br.secretsType" .) (list "plain" "sealedSecrets")) }}
{{- fail (printf "secrets.type: %q: use plain or sealedSecrets" (include "br.secretsType" .)) }}
{{- end }}
{{- if eq (.Values.settings.healthCode | default "") "changeme" }}
{{- fail "settings.healthCode is the Go chart's example value: remove it (a health key is generated into the Secret and kept) or set your own" }}
{{- end }}
{{- end }}
