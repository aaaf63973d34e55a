{{/* ------------------------------------------------------------------ names */}}

{{- define "janus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Object name prefix; 40 characters leave room for the component suffixes. */}}
{{- define "janus.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The ClusterRole granted to requesters. Its name is fixed: the controller
     binds it by name and RBAC `bind` is limited to it by resourceName. */}}
{{- define "janus.podExecRole" -}}janus-pod-exec{{- end -}}

{{/* The ClusterRoles the chart ships, by name -> their rules file (files/rbac/). Each is
     rendered only when a role of `janus.roles` names it; an operator's own ClusterRoles are
     theirs to install. */}}
{{- define "janus.shippedClusterRoles" -}}
{"janus-pod-exec": "pod-exec", "janus-pod-logs": "pod-logs", "janus-pod-debug": "pod-debug"}
{{- end -}}

{{/* Every configured role's ClusterRole, once each, in the order of `janus.roles`, as a JSON
     list: the controller's (and the agent's) `bind` resourceNames. */}}
{{- define "janus.roleClusterRoles" -}}
{{- $out := list -}}
{{- range .Values.janus.roles -}}
{{- if not (has .clusterRole $out) -}}{{- $out = append $out .clusterRole -}}{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{- define "janus.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* ------------------------------------------------------------------ labels */}}

{{- define "janus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "janus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Usage: include "janus.labels" (dict "ctx" $ "component" "web") */}}
{{- define "janus.labels" -}}
{{ include "janus.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: k8s-janus
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "janus.componentSelector" -}}
{{ include "janus.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* ------------------------------------------------------------------ values derived */}}

{{/* Replicas of a component: `controller.replicaCount` / `webui.replicaCount`, or
     `replicaCount` when that is null. Usage: include "janus.replicas" (dict "ctx" $ "component" "web") */}}
{{- define "janus.replicas" -}}
{{- $own := ternary .ctx.Values.webui.replicaCount .ctx.Values.controller.replicaCount (eq .component "web") -}}
{{- if kindIs "invalid" $own -}}{{ int .ctx.Values.replicaCount }}{{- else -}}{{ int $own }}{{- end -}}
{{- end -}}

{{/* local | proxy | oidc — the web UI's identity source. */}}
{{- define "janus.authMode" -}}
{{- if .Values.oidc.enabled -}}oidc{{- else if .Values.webui.authEnabled -}}proxy{{- else -}}local{{- end -}}
{{- end -}}

{{- define "janus.sessionSecretName" -}}
{{- default (printf "%s-session" (include "janus.fullname" .)) .Values.webui.existingSessionSecret -}}
{{- end -}}

{{- define "janus.bootstrapAdminSecretName" -}}
{{- default (printf "%s-bootstrap-admin" (include "janus.fullname" .)) .Values.webui.existingBootstrapAdminSecret -}}
{{- end -}}

{{/* Secret and key holding the PostgreSQL password. */}}
{{- define "janus.postgresqlSecretName" -}}
{{- if .Values.externalSecrets.enabled -}}
{{- printf "%s-postgresql" (include "janus.fullname" .) -}}
{{- else -}}
{{- .Values.postgresql.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "janus.postgresqlSecretKey" -}}
{{- if .Values.externalSecrets.enabled -}}password{{- else -}}{{ .Values.postgresql.existingSecretKey }}{{- end -}}
{{- end -}}

{{- define "janus.databaseUrl" -}}
{{- if .Values.postgresql.enabled -}}
{{- with .Values.postgresql -}}
{{- printf "postgres://%s@%s:%d/%s?sslmode=%s" .user .host (int .port) .database .sslMode -}}
{{- end -}}
{{- else -}}
sqlite:///var/lib/janus/janus.db
{{- end -}}
{{- end -}}

{{/* ------------------------------------------------------------------ pod pieces */}}

{{/* Pod Security Standards "restricted", for every pod of the chart. */}}
{{- define "janus.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "janus.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "janus.podScheduling" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Environment shared by the janus containers. */}}
{{- define "janus.commonEnv" -}}
- name: JANUS_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* ------------------------------------------------------------------ checks */}}

{{/* Refuse values that cannot work, with a message that says what to change.
     Included once, from the ConfigMap (central mode) and from the agent
     ServiceAccount (remote mode). */}}
{{- define "janus.validate" -}}
{{- $v := .Values -}}
{{- $roleNames := dict -}}
{{- range $v.janus.roles -}}
{{- if hasKey $roleNames .name -}}
{{- fail (printf "janus.roles: the name %q appears twice" .name) -}}
{{- end -}}
{{- $_ := set $roleNames .name true -}}
{{- if and .debugImages (ne .terminal "debug") -}}
{{- fail (printf "janus.roles: %q has debugImages but terminal %q; only a role with terminal: debug starts debug containers" .name .terminal) -}}
{{- end -}}
{{- end -}}
{{- /* As janus_api::rules::scope::validate_roles (same message): the chart binds the controller and
     every agent to each role's ClusterRole, so one of Kubernetes' aggregated user-facing roles would
     hand them secrets, RBAC or everything cluster-wide. The schema's name pattern already refuses
     system:*; this also holds with --skip-schema-validation. */ -}}
{{- range $i, $r := $v.janus.roles -}}
{{- if or (has $r.clusterRole (list "cluster-admin" "admin" "edit")) (hasPrefix "system:" (toString $r.clusterRole)) -}}
{{- fail (printf "janus.roles[%d].clusterRole: %q is refused: k8s-janus binds the controller (and every agent) to each role's ClusterRole cluster-wide, so a role may not name cluster-admin, admin, edit or a system: ClusterRole; give the role a ClusterRole of its own with only the pod rights it needs" $i $r.clusterRole) -}}
{{- end -}}
{{- end -}}
{{- if $v.remote.enabled -}}
{{- if $v.kubeconfigSync.enabled -}}
{{- fail "kubeconfigSync.enabled runs on the central cluster; it cannot be combined with remote.enabled=true" -}}
{{- end -}}
{{- else -}}
{{- /* Only the web opens the database: the controller may have replicas with SQLite. */ -}}
{{- $webReplicas := int (include "janus.replicas" (dict "ctx" . "component" "web")) -}}
{{- if and (gt $webReplicas 1) (not $v.postgresql.enabled) -}}
{{- $key := ternary "replicaCount" "webui.replicaCount" (kindIs "invalid" $v.webui.replicaCount) -}}
{{- fail (printf "%s=%d requires postgresql.enabled=true: the default SQLite database is single-writer and lives on one pod's volume. Set %s=1 or configure PostgreSQL." $key $webReplicas $key) -}}
{{- end -}}
{{- if $v.postgresql.enabled -}}
{{- if not $v.postgresql.host -}}
{{- fail "postgresql.enabled=true requires postgresql.host" -}}
{{- end -}}
{{- if and (not $v.externalSecrets.enabled) (not $v.postgresql.existingSecret) -}}
{{- fail "postgresql.enabled=true requires the password in postgresql.existingSecret, or externalSecrets.enabled=true" -}}
{{- end -}}
{{- end -}}
{{- if $v.externalSecrets.enabled -}}
{{- if not $v.postgresql.enabled -}}
{{- fail "externalSecrets.enabled=true only provides the PostgreSQL password: it requires postgresql.enabled=true" -}}
{{- end -}}
{{- if or (not $v.externalSecrets.secretStoreRef.name) (not $v.externalSecrets.remoteKey) -}}
{{- fail "externalSecrets.enabled=true requires externalSecrets.secretStoreRef.name and externalSecrets.remoteKey" -}}
{{- end -}}
{{- end -}}
{{- if and $v.oidc.enabled $v.webui.authEnabled -}}
{{- fail "oidc.enabled and webui.authEnabled are exclusive: choose native OIDC or the oauth2-proxy sidecar" -}}
{{- end -}}
{{- if $v.oidc.enabled -}}
{{- if or (not $v.oidc.issuerUrl) (not $v.oidc.clientId) (not $v.oidc.existingSecret) -}}
{{- fail "oidc.enabled=true requires oidc.issuerUrl, oidc.clientId and oidc.existingSecret (the client secret)" -}}
{{- end -}}
{{- if not $v.webui.baseUrl -}}
{{- fail "oidc.enabled=true requires webui.baseUrl (the OIDC redirect URL is built from it)" -}}
{{- end -}}
{{- end -}}
{{- if $v.webui.authEnabled -}}
{{- if not $v.oauth2Proxy.existingSecret -}}
{{- fail "webui.authEnabled=true requires oauth2Proxy.existingSecret with keys client-id, client-secret and cookie-secret" -}}
{{- end -}}
{{- if not $v.oauth2Proxy.emailDomains -}}
{{- fail "webui.authEnabled=true requires oauth2Proxy.emailDomains (use [\"*\"] to accept any verified email)" -}}
{{- end -}}
{{- range $v.oauth2Proxy.extraArgs -}}
{{- /* The UI trusts X-Forwarded-* only because the sidecar strips clients' copies and injects its own. */ -}}
{{- if regexMatch "^--?(skip-auth-strip-headers|pass-user-headers)=(false|0|f|F|FALSE|False)$" (toString .) -}}
{{- fail (printf "oauth2Proxy.extraArgs must not contain %s: the UI's identity headers are safe only while oauth2-proxy injects them and strips clients' copies" (toString .)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $j := $v.janus -}}
{{- if or (lt (int $j.defaultTtlSeconds) (int $j.minTtlSeconds)) (gt (int $j.defaultTtlSeconds) (int $j.maxTtlSeconds)) -}}
{{- fail (printf "janus.defaultTtlSeconds=%d must lie between janus.minTtlSeconds=%d and janus.maxTtlSeconds=%d" (int $j.defaultTtlSeconds) (int $j.minTtlSeconds) (int $j.maxTtlSeconds)) -}}
{{- end -}}
{{- range $j.approvalTtlOptions -}}
{{- if or (lt (int .) (int $j.minTtlSeconds)) (gt (int .) (int $j.maxTtlSeconds)) -}}
{{- fail (printf "janus.approvalTtlOptions entry %d must lie between janus.minTtlSeconds=%d and janus.maxTtlSeconds=%d" (int .) (int $j.minTtlSeconds) (int $j.maxTtlSeconds)) -}}
{{- end -}}
{{- end -}}
{{- /* As janus_api::config (web.apiTokens): the schema bounds each value, this their relation. */ -}}
{{- with $j.web.apiTokens -}}
{{- if gt (int .defaultLifetimeDays) (int .maxLifetimeDays) -}}
{{- fail (printf "janus.web.apiTokens.defaultLifetimeDays=%d must not exceed janus.web.apiTokens.maxLifetimeDays=%d" (int .defaultLifetimeDays) (int .maxLifetimeDays)) -}}
{{- end -}}
{{- end -}}
{{- $names := dict -}}
{{- range $v.clusters -}}
{{- if hasKey $names .name -}}
{{- fail (printf "clusters: the name %q appears twice" .name) -}}
{{- end -}}
{{- $_ := set $names .name true -}}
{{- end -}}
{{- end -}}
{{- end -}}
