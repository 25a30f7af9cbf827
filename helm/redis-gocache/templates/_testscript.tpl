{{/*
The shell script of the `helm test` pod. WRITER_URL and READER_URL come from the runner
Secrets; WRITER_PASSWORD / READER_PASSWORD only when the URL cannot carry the password
(existing Secrets). Kept apart from the Pod so the chart's own tests run it against a real
redis-server.
*/}}
{{- define "redis-gocache.testScript" -}}
set -eu
key="{{ .Values.prefix }}helm-test:$(date +%s)-$$"
{{- if .Values.tls.enabled }}
{{- if .Values.tls.authClients }}
cli_flags="--tls --cacert /tls/ca.crt --cert /tls/tls.crt --key /tls/tls.key"
{{- else }}
cli_flags="--tls --insecure"
{{- end }}
{{- else }}
cli_flags=""
{{- end }}
# cli URL PASSWORD ARGS...: redis-cli as the user of URL. A URL from an existing Secret names
# the user only (redis://user@host:port/0) and the password comes apart: redis-cli would
# read a lone name before "@" as a password, so the parts are passed separately, and the
# password through REDISCLI_AUTH. No password is ever echoed.
cli() (
  url="$1"; password="$2"; shift 2
  unset REDISCLI_AUTH
  if [ -z "$password" ]; then
    # shellcheck disable=SC2086
    exec redis-cli --no-auth-warning $cli_flags -u "$url" "$@"
  fi
  rest="${url#*://}"
  user="${rest%%@*}"
  hostport="${rest#*@}"
  hostport="${hostport%%/*}"
  export REDISCLI_AUTH="$password"
  # shellcheck disable=SC2086
  exec redis-cli --no-auth-warning $cli_flags --user "$user" -h "${hostport%:*}" -p "${hostport##*:}" "$@"
)
{{- if .Values.ha.enabled }}
# resolve URL PASSWORD: the runner URLs name the sentinels
# (redis+sentinel://user:password@host:port,.../service/db?sentinel_username=user). Ask them,
# as the same user, which Redis is the primary, and print a plain URL of it.
resolve() {
  url="$1"; password="$2"
  scheme="${url%%+sentinel://*}"
  rest="${url#*://}"
  auth=""
  case "$rest" in *@*) auth="${rest%%@*}"; rest="${rest#*@}" ;; esac
  user="${auth%%:*}"
  case "$auth" in *:*) [ -n "$password" ] || password="${auth#*:}" ;; esac
  hosts="${rest%%/*}"
  path="${rest#*/}"; path="${path%%\?*}"
  service="${path%%/*}"; db="${path#*/}"
  for node in $(echo "$hosts" | tr ',' ' '); do
    if [ -n "$user" ]; then
      # shellcheck disable=SC2086
      reply="$(REDISCLI_AUTH="$password" redis-cli --no-auth-warning $cli_flags --user "$user" -h "${node%:*}" -p "${node##*:}" sentinel get-master-addr-by-name "$service" 2>/dev/null)" || continue
    else
      # shellcheck disable=SC2086
      reply="$(redis-cli $cli_flags -h "${node%:*}" -p "${node##*:}" sentinel get-master-addr-by-name "$service" 2>/dev/null)" || continue
    fi
    host="$(echo "$reply" | sed -n 1p)"; port="$(echo "$reply" | sed -n 2p)"
    case "$port" in ''|*[!0-9]*) continue ;; esac
    echo "$scheme://${auth:+$auth@}$host:$port/$db"
    return 0
  done
  echo "FAILED: no sentinel of $hosts named the primary" >&2
  return 1
}
WRITER_URL="$(resolve "$WRITER_URL" "${WRITER_PASSWORD:-}")"
READER_URL="$(resolve "$READER_URL" "${READER_PASSWORD:-}")"
echo "ok: the sentinels name the primary"
{{- end }}
writer() { cli "$WRITER_URL" "${WRITER_PASSWORD:-}" "$@"; }
reader() { cli "$READER_URL" "${READER_PASSWORD:-}" "$@"; }
# expect WANT writer|reader ARGS...: the reply must start with WANT.
expect() {
  want="$1"; who="$2"; shift 2
  got="$("$who" "$@" 2>&1)" || true
  case "$got" in
    "$want"*) echo "ok: $who $1 -> $want" ;;
    *) echo "FAILED: $who $1: want $want, got: $got"; exit 1 ;;
  esac
}
expect PONG writer ping
expect OK writer set "$key" hello EX 60
expect PONG reader ping
expect hello reader get "$key"
{{- if .Values.auth.enabled }}
expect NOPERM reader set "$key" changed EX 60
expect hello reader get "$key"
{{- end }}
expect 1 writer del "$key"
echo "redis-gocache: writer and reader credentials work"
{{- end }}
