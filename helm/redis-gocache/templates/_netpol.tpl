{{/* NetworkPolicy peers allowed to scrape metrics: pods of networkPolicy.metricsNamespaces
(by name) and networkPolicy.metricsFrom (each names namespaces). A YAML list, maybe empty. */}}
{{- define "redis-gocache.metricsPeers" -}}
{{- with .Values.networkPolicy.metricsNamespaces }}
- namespaceSelector:
    matchExpressions:
      - key: kubernetes.io/metadata.name
        operator: In
        values:
          {{- toYaml . | nindent 10 }}
{{- end }}
{{- with .Values.networkPolicy.metricsFrom }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* NetworkPolicy peers of the runners: labelled pods of this namespace and of the namespaces
networkPolicy.clientNamespaceSelector picks. */}}
{{- define "redis-gocache.clientPeers" -}}
- podSelector:
    matchLabels:
      {{- toYaml .Values.networkPolicy.clientPodLabels | nindent 6 }}
{{- with .Values.networkPolicy.clientNamespaceSelector }}
- namespaceSelector:
    {{- toYaml . | nindent 4 }}
  podSelector:
    matchLabels:
      {{- toYaml $.Values.networkPolicy.clientPodLabels | nindent 6 }}
{{- end }}
{{- end }}
