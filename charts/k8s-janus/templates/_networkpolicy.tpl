{{/* Helpers of networkpolicy.yaml. */}}

{{- /* Egress the API-using pods share: DNS, the central API server, remote clusters. */}}
{{- define "janus.egressBase" -}}
{{- $np := .Values.networkPolicy -}}
# DNS
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
# the Kubernetes API server (no `to`: any address, these ports only, unless apiServerCIDRs is set)
{{ include "janus.egressRule" (dict "cidrs" $np.apiServerCIDRs "ports" $np.apiServerPorts) }}
{{- if $np.remoteClusterCIDRs }}
# remote cluster API servers
{{ include "janus.egressRule" (dict "cidrs" $np.remoteClusterCIDRs "ports" $np.remoteClusterPorts) }}
{{- end }}
{{- end -}}
{{- define "janus.egressRule" -}}
- ports:
    {{- range .ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with .cidrs }}
  to:
    {{- range . }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  {{- end }}
{{- end -}}
{{- define "janus.fromPrometheus" -}}
- from:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.networkPolicy.prometheusNamespace }}
  ports:
    - port: metrics
      protocol: TCP
{{- end -}}
