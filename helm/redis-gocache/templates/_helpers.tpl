{{/* Names and labels. */}}

{{- define "redis-gocache.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name; every object name starts with it (at most 63 characters,
leaving room for the longest suffix, "-monitor"). */}}
{{- define "redis-gocache.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "redis-gocache.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "redis-gocache.selectorLabels" -}}
app.kubernetes.io/name: {{ include "redis-gocache.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "redis-gocache.labels" -}}
helm.sh/chart: {{ include "redis-gocache.chart" . }}
{{ include "redis-gocache.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Whether Redis is someone else's: then only the runner-side objects are rendered. */}}
{{- define "redis-gocache.external" -}}
{{- if .Values.externalRedis.url }}true{{ end }}
{{- end }}

{{- define "redis-gocache.authSecretName" -}}
{{- printf "%s-auth" (include "redis-gocache.fullname" .) }}
{{- end }}

{{/* Host name of the Service that resolves from every namespace. */}}
{{- define "redis-gocache.host" -}}
{{- printf "%s.%s.svc.%s" (include "redis-gocache.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/*
maxmemory in bytes: redis.maxmemory as given, else maxmemoryPercent of the memory limit.
Kubernetes quantities: a plain number of bytes, or a number with Ki/Mi/Gi/Ti/Pi/Ei or
k/M/G/T/P/E.
*/}}
{{- define "redis-gocache.maxmemory" -}}
{{- if .Values.redis.maxmemory }}
{{- .Values.redis.maxmemory }}
{{- else }}
{{- $limit := "" }}
{{- if and .Values.resources .Values.resources.limits .Values.resources.limits.memory }}
{{- $limit = toString .Values.resources.limits.memory }}
{{- else }}
{{- fail "redis.maxmemory is empty and resources.limits.memory is not set: set one of them (maxmemory defaults to redis.maxmemoryPercent of the limit)" }}
{{- end }}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$" $limit) }}
{{- fail (printf "resources.limits.memory %q: use a number of bytes, or a number with Ki/Mi/Gi/Ti or k/M/G/T (or set redis.maxmemory)" $limit) }}
{{- end }}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $limit }}
{{- $suffix := trimPrefix $number $limit }}
{{- $units := dict "" 1.0 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 }}
{{- $bytes := mulf (float64 $number) (index $units $suffix) }}
{{- printf "%.0f" (floor (divf (mulf $bytes (float64 .Values.redis.maxmemoryPercent)) 100.0)) }}
{{- end }}
{{- end }}

{{/*
Passwords the chart generates, by user: {"writer": ..., "reader": ..., "monitor": ...} (only
users without an existingSecret). A password already in the release's auth Secret is kept,
so `helm upgrade` never changes it; a new one is generated once per render and remembered,
so the auth Secret and the runner Secrets agree. Offline renders (`helm template`) see no
Secret and get fresh ones.
*/}}
{{- define "redis-gocache.generatedPasswords" -}}
{{- if not (hasKey .Values "_generatedPasswords") }}
{{- $found := lookup "v1" "Secret" .Release.Namespace (include "redis-gocache.authSecretName" .) }}
{{- $data := dict }}
{{- if and $found $found.data }}
{{- $data = $found.data }}
{{- end }}
{{- $passwords := dict }}
{{- range $user := list "writer" "reader" "monitor" }}
{{- if not (index $.Values.auth $user).existingSecret }}
{{- $key := printf "%s-password" $user }}
{{- if hasKey $data $key }}
{{- $_ := set $passwords $user (index $data $key | b64dec) }}
{{- else }}
{{- $_ := set $passwords $user (randAlphaNum 40) }}
{{- end }}
{{- end }}
{{- end }}
{{- $_ := set .Values "_generatedPasswords" $passwords }}
{{- end }}
{{- toJson (index .Values "_generatedPasswords") }}
{{- end }}

{{/* secretKeyRef of a user's password. Call with (list $ "writer"). */}}
{{- define "redis-gocache.passwordRef" -}}
{{- $root := index . 0 }}
{{- $user := index . 1 }}
{{- $cfg := index $root.Values.auth $user }}
{{- if $cfg.existingSecret -}}
name: {{ $cfg.existingSecret }}
key: {{ $cfg.existingSecretPasswordKey }}
{{- else -}}
name: {{ include "redis-gocache.authSecretName" $root }}
key: {{ printf "%s-password" $user }}
{{- end }}
{{- end }}

{{/*
REDIS_URL of a runner. Call with (list $ "writer") or (list $ "reader"). It carries the
password when the chart generated it; with an existingSecret it names the user only, and the
runner adds REDIS_PASSWORD from that Secret (see NOTES.txt).
*/}}
{{- define "redis-gocache.runnerUrl" -}}
{{- $root := index . 0 }}
{{- $user := index . 1 }}
{{- if $root.Values.externalRedis.url }}
{{- if eq $user "reader" }}
{{- default $root.Values.externalRedis.url $root.Values.externalRedis.readerUrl }}
{{- else }}
{{- $root.Values.externalRedis.url }}
{{- end }}
{{- else }}
{{- $scheme := ternary "rediss" "redis" $root.Values.tls.enabled }}
{{- $userinfo := "" }}
{{- if $root.Values.auth.enabled }}
{{- $cfg := index $root.Values.auth $user }}
{{- if $cfg.existingSecret }}
{{- $userinfo = printf "%s@" $cfg.username }}
{{- else }}
{{- $passwords := include "redis-gocache.generatedPasswords" $root | fromJson }}
{{- $userinfo = printf "%s:%s@" $cfg.username (index $passwords $user) }}
{{- end }}
{{- end }}
{{- printf "%s://%s%s:%v/0" $scheme $userinfo (include "redis-gocache.host" $root) $root.Values.service.port }}
{{- end }}
{{- end }}

{{/* redis-cli flags for connecting to the local server from inside the pod. */}}
{{- define "redis-gocache.cliTlsFlags" -}}
{{- if .Values.tls.enabled }}
{{- /* 127.0.0.1 is not in the certificate: the probe checks liveness, not identity. */}}
{{- print " --tls --insecure" }}
{{- if .Values.tls.authClients }} --cert /tls/tls.crt --key /tls/tls.key{{ end }}
{{- end }}
{{- end }}

{{- define "redis-gocache.image" -}}
{{- printf "%s:%s" .repository .tag }}
{{- end }}
