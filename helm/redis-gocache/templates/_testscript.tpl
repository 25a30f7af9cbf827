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
# redis-cli as the writer or the reader. A password kept outside the URL (existing Secrets)
# goes through REDISCLI_AUTH; no password is ever echoed.
writer() (
  unset REDISCLI_AUTH
  if [ -n "${WRITER_PASSWORD:-}" ]; then export REDISCLI_AUTH="$WRITER_PASSWORD"; fi
  # shellcheck disable=SC2086
  exec redis-cli --no-auth-warning $cli_flags -u "$WRITER_URL" "$@"
)
reader() (
  unset REDISCLI_AUTH
  if [ -n "${READER_PASSWORD:-}" ]; then export REDISCLI_AUTH="$READER_PASSWORD"; fi
  # shellcheck disable=SC2086
  exec redis-cli --no-auth-warning $cli_flags -u "$READER_URL" "$@"
)
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
