{{/* Names and labels. */}}

{{- define "redis-gocache.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name; every object name starts with it (at most 52 characters,
leaving room for the longest suffix, "-dashboard", within the 63 of a Service name). */}}
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

{{/* Name of the headless Service that gives the StatefulSet's pods their DNS names. */}}
{{- define "redis-gocache.headless" -}}
{{- printf "%s-headless" (include "redis-gocache.fullname" .) }}
{{- end }}

{{/* DNS name of pod N of the StatefulSet. Call with (list $ N). */}}
{{- define "redis-gocache.podHost" -}}
{{- $root := index . 0 }}
{{- printf "%s-%d.%s.%s.svc.%s" (include "redis-gocache.fullname" $root) (index . 1) (include "redis-gocache.headless" $root) $root.Release.Namespace $root.Values.clusterDomain }}
{{- end }}

{{/* The ACL users of this release: the runners' and the monitor, and with ha.enabled the
replication and sentinel users. A JSON list. */}}
{{- define "redis-gocache.users" -}}
{{- $users := list "writer" "reader" "monitor" }}
{{- if .Values.ha.enabled }}
{{- $users = concat $users (list "replication" "sentinel") }}
{{- end }}
{{- toJson $users }}
{{- end }}

{{/* Sentinel quorum: a majority of the sentinels (one per Redis pod). */}}
{{- define "redis-gocache.quorum" -}}
{{- add (div .Values.ha.replicas 2) 1 }}
{{- end }}

{{/* Whether Redis forks in normal operation (RDB snapshots, or full syncs of replicas). */}}
{{- define "redis-gocache.forks" -}}
{{- if or .Values.persistence.enabled .Values.ha.enabled }}true{{ end }}
{{- end }}

{{- define "redis-gocache.authSecretName" -}}
{{- printf "%s-auth" (include "redis-gocache.fullname" .) }}
{{- end }}

{{/* Host name of the Service that resolves from every namespace. */}}
{{- define "redis-gocache.host" -}}
{{- printf "%s.%s.svc.%s" (include "redis-gocache.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/* resources.limits.memory in bytes, or "" when no limit is set. Kubernetes quantities: a
plain number of bytes, or a number with Ki/Mi/Gi/Ti/Pi/Ei or k/M/G/T/P/E. */}}
{{- define "redis-gocache.limitBytes" -}}
{{- if and .Values.resources .Values.resources.limits .Values.resources.limits.memory }}
{{- $limit := toString .Values.resources.limits.memory }}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$" $limit) }}
{{- fail (printf "resources.limits.memory %q: use a number of bytes, or a number with Ki/Mi/Gi/Ti or k/M/G/T (or set redis.maxmemory)" $limit) }}
{{- end }}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $limit }}
{{- $suffix := trimPrefix $number $limit }}
{{- $units := dict "" 1.0 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 }}
{{- printf "%.0f" (mulf (float64 $number) (index $units $suffix)) }}
{{- end }}
{{- end }}

{{/*
maxmemory for redis.conf: redis.maxmemory as given, else a percentage of the memory limit:
redis.maxmemoryPercent, or at most redis.forkMaxmemoryPercent when Redis forks (a snapshot's
or a full sync's child can copy every page written meanwhile). With a fork, an explicit
maxmemory above forkMaxmemoryPercent of the limit is refused: the pod could be OOM-killed.
*/}}
{{- define "redis-gocache.maxmemory" -}}
{{- $limit := include "redis-gocache.limitBytes" . }}
{{- $percent := .Values.redis.maxmemoryPercent }}
{{- $forks := include "redis-gocache.forks" . }}
{{- if $forks }}
{{- $percent = min $percent .Values.redis.forkMaxmemoryPercent }}
{{- end }}
{{- if .Values.redis.maxmemory }}
{{- $given := toString .Values.redis.maxmemory }}
{{- if and $forks $limit }}
{{- $number := regexFind "^[0-9]+" $given }}
{{- $suffix := lower (trimPrefix $number $given) }}
{{- /* Redis's units: k/m/g are powers of 1000, kb/mb/gb powers of 1024. */}}
{{- $units := dict "" 1.0 "b" 1.0 "k" 1e3 "kb" 1024.0 "m" 1e6 "mb" 1048576.0 "g" 1e9 "gb" 1073741824.0 }}
{{- $bytes := mulf (float64 $number) (index $units $suffix) }}
{{- $room := divf (mulf (float64 $limit) (float64 .Values.redis.forkMaxmemoryPercent)) 100.0 }}
{{- if gt $bytes $room }}
{{- fail (printf "redis.maxmemory %s leaves no room for the fork of %s: with it on, keep maxmemory at most redis.forkMaxmemoryPercent (%d%%) of resources.limits.memory (%s), or raise the limit" $given (ternary "persistence (RDB snapshots)" "replication (ha.enabled)" .Values.persistence.enabled) (int .Values.redis.forkMaxmemoryPercent) (toString .Values.resources.limits.memory)) }}
{{- end }}
{{- end }}
{{- $given }}
{{- else }}
{{- if not $limit }}
{{- fail "redis.maxmemory is empty and resources.limits.memory is not set: set one of them (maxmemory defaults to redis.maxmemoryPercent of the limit)" }}
{{- end }}
{{- printf "%.0f" (floor (divf (mulf (float64 $limit) (float64 $percent)) 100.0)) }}
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
{{- range $user := include "redis-gocache.users" . | fromJsonArray }}
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
{{- if $root.Values.ha.enabled }}
{{- /* Every sentinel, by its pod's name; the sentinels take the same user and password
(ACL users are the same on every Redis and Sentinel), which sentinel_username says. */}}
{{- $hosts := list }}
{{- range $i := until (int $root.Values.ha.replicas) }}
{{- $hosts = append $hosts (printf "%s:%v" (include "redis-gocache.podHost" (list $root $i)) $root.Values.ha.sentinel.port) }}
{{- end }}
{{- $query := "" }}
{{- if $root.Values.auth.enabled }}
{{- $query = printf "?sentinel_username=%s" (index $root.Values.auth $user).username }}
{{- end }}
{{- printf "%s+sentinel://%s%s/%s/0%s" $scheme $userinfo (join "," $hosts) $root.Values.ha.masterName $query }}
{{- else }}
{{- printf "%s://%s%s:%v/0" $scheme $userinfo (include "redis-gocache.host" $root) $root.Values.service.port }}
{{- end }}
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

{{/* Environment of ha.sh (both containers of an HA pod): where this pod and its peers are,
and the passwords it needs. */}}
{{- define "redis-gocache.haEnv" -}}
{{- $redisNodes := list }}
{{- $sentinelNodes := list }}
{{- range $i := until (int .Values.ha.replicas) }}
{{- $host := include "redis-gocache.podHost" (list $ $i) }}
{{- $redisNodes = append $redisNodes (printf "%s:6379" $host) }}
{{- $sentinelNodes = append $sentinelNodes (printf "%s:%v" $host $.Values.ha.sentinel.port) }}
{{- end }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: SELF_HOST
  value: {{ printf "$(POD_NAME).%s.%s.svc.%s" (include "redis-gocache.headless" .) .Release.Namespace .Values.clusterDomain | quote }}
- name: REDIS_PORT
  value: "6379"
- name: SENTINEL_PORT
  value: {{ .Values.ha.sentinel.port | quote }}
- name: REDIS_NODES
  value: {{ join " " $redisNodes | quote }}
- name: SENTINEL_NODES
  value: {{ join " " $sentinelNodes | quote }}
- name: BOOTSTRAP_PRIMARY
  value: {{ first $redisNodes | quote }}
{{- if .Values.auth.enabled }}
{{- range $user := list "replication" "sentinel" }}
- name: REDIS_{{ upper $user }}_PASSWORD
  valueFrom:
    secretKeyRef:
      {{- include "redis-gocache.passwordRef" (list $ $user) | nindent 6 }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Redis pods' affinity: the `affinity` value, else (ha.enabled) anti-affinity across
nodes as ha.antiAffinity says. */}}
{{- define "redis-gocache.affinity" -}}
{{- if .Values.affinity }}
{{- toYaml .Values.affinity }}
{{- else if and .Values.ha.enabled (ne .Values.ha.antiAffinity "none") }}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (merge (dict "app.kubernetes.io/component" "redis") (include "redis-gocache.selectorLabels" . | fromYaml))) }}
podAntiAffinity:
{{- if eq .Values.ha.antiAffinity "hard" }}
  requiredDuringSchedulingIgnoredDuringExecution:
    {{- toYaml (list $term) | nindent 4 }}
{{- else }}
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        {{- toYaml $term | nindent 8 }}
{{- end }}
{{- end }}
{{- end }}

{{/* The CA certificate (PEM) runners verify Redis with: tls.ca, else ca.crt of
tls.existingSecret, read at install time. Empty when the runners need none. */}}
{{- define "redis-gocache.runnerCa" -}}
{{- if .Values.tls.ca }}
{{- .Values.tls.ca }}
{{- else if and .Values.tls.enabled (not (include "redis-gocache.external" .)) }}
{{- $secret := lookup "v1" "Secret" .Release.Namespace .Values.tls.existingSecret }}
{{- if and $secret $secret.data (hasKey $secret.data "ca.crt") }}
{{- index $secret.data "ca.crt" | b64dec }}
{{- else }}
{{- fail (printf "tls.enabled: runners need the CA that signed the server certificate, and Secret %s/%s has no ca.crt the chart can read (offline renders such as `helm template` read nothing): set tls.ca to the CA's PEM" .Release.Namespace .Values.tls.existingSecret) }}
{{- end }}
{{- end }}
{{- end }}
