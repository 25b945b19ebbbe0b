{{/*
Named templates for your own charts. Each takes a context whose .Values are this chart's values and which has
.Release (in a parent chart: (dict "Values" (index .Values "geminio-sidecar") "Release" .Release)).
  geminio-sidecar.initContainer    the native sidecar: an item for spec.initContainers
  geminio-sidecar.volumes          items for spec.volumes (the config, the TLS secrets)
  geminio-sidecar.podAnnotations   checksum/config (a config change rolls the pods) and the Prometheus hints
  geminio-sidecar.podSecurityContext
  geminio-sidecar.terminationGracePeriodSeconds
  geminio-sidecar.config           the sidecar.yaml text
*/}}

{{- define "geminio-sidecar.fullname" -}}
{{- if contains "geminio-sidecar" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-geminio-sidecar" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "geminio-sidecar.configMapName" -}}
{{- include "geminio-sidecar.fullname" . -}}
{{- end -}}

{{- define "geminio-sidecar.config" -}}
{{- $v := .Values -}}
{{- $c := dict "name" (default .Release.Name $v.name) "admin" (dict "listen" (printf "0.0.0.0:%d" (int $v.ports.admin))) "log" $v.log "shutdown" (dict "gracePeriodMs" (int $v.shutdown.gracePeriodMs)) "hooks" $v.hooks "upstreams" $v.upstreams "outbound" $v.outbound "services" $v.services "tunnels" $v.tunnels "plugins" $v.plugins -}}
{{- if $v.inbound.enabled -}}
{{- $_ := set $c "inbound" (omit $v.inbound "enabled") -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{- define "geminio-sidecar.terminationGracePeriodSeconds" -}}
{{- $s := .Values.shutdown -}}
{{- if $s.terminationGracePeriodSeconds -}}
{{- int $s.terminationGracePeriodSeconds -}}
{{- else -}}
{{- add (div (add (int $s.gracePeriodMs) 999) 1000) (int $s.preStopSleepSeconds) 5 -}}
{{- end -}}
{{- end -}}

{{- /* checksum/config: the ConfigMap holds the text as a YAML literal block, which ends in one newline. */ -}}
{{- define "geminio-sidecar.podAnnotations" -}}
checksum/config: {{ printf "%s\n" (include "geminio-sidecar.config" .) | sha256sum }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.ports.admin | quote }}
prometheus.io/path: /metrics
{{- end -}}

{{- define "geminio-sidecar.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ int .Values.runAsUser }}
runAsGroup: {{ int .Values.runAsGroup }}
seccompProfile: { type: RuntimeDefault }
{{- end -}}

{{- define "geminio-sidecar.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ int .Values.runAsUser }}
runAsGroup: {{ int .Values.runAsGroup }}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities: { drop: [ALL] }
seccompProfile: { type: RuntimeDefault }
{{- end -}}

{{- define "geminio-sidecar.image" -}}
{{- $i := .Values.image -}}
{{- if $i.digest -}}
{{- printf "%s@%s" $i.repository $i.digest -}}
{{- else -}}
{{- if or (not $i.tag) (eq (toString $i.tag) "latest") -}}
{{- fail "image.tag must be a pinned release (not empty, not latest), or set image.digest" -}}
{{- end -}}
{{- printf "%s:%s" $i.repository (toString $i.tag) -}}
{{- end -}}
{{- end -}}

{{- define "geminio-sidecar.initContainer" -}}
- name: geminio-sidecar
  image: {{ include "geminio-sidecar.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  # A native sidecar: started (and startup-probed) before the app containers, stopped after them.
  restartPolicy: Always
  args: ["run", "--config", "/etc/geminio-sidecar/sidecar.yaml"]
  {{- with .Values.env }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    {{- if .Values.inbound.enabled }}
    - { name: geminio, containerPort: {{ int .Values.ports.geminio }}, protocol: TCP }
    {{- end }}
    - { name: admin, containerPort: {{ int .Values.ports.admin }}, protocol: TCP }
  startupProbe:
    httpGet: { path: /healthz, port: admin }
    {{- toYaml .Values.probes.startup | nindent 4 }}
  readinessProbe:
    httpGet: { path: /readyz, port: admin }
    {{- toYaml .Values.probes.readiness | nindent 4 }}
  livenessProbe:
    httpGet: { path: /healthz, port: admin }
    {{- toYaml .Values.probes.liveness | nindent 4 }}
  lifecycle:
    preStop:
      exec: { command: ["sleep", {{ .Values.shutdown.preStopSleepSeconds | toString | quote }}] }
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    {{- include "geminio-sidecar.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    - { name: geminio-sidecar-config, mountPath: /etc/geminio-sidecar, readOnly: true }
    {{- range .Values.tlsSecrets }}
    - { name: {{ printf "geminio-tls-%s" .name | trunc 63 | trimSuffix "-" }}, mountPath: {{ .mountPath }}, readOnly: true }
    {{- end }}
{{- end -}}

{{- define "geminio-sidecar.volumes" -}}
- name: geminio-sidecar-config
  configMap: { name: {{ include "geminio-sidecar.configMapName" . }} }
{{- range .Values.tlsSecrets }}
- name: {{ printf "geminio-tls-%s" .name | trunc 63 | trimSuffix "-" }}
  secret: { secretName: {{ .name }}, defaultMode: 0440 }
{{- end }}
{{- end -}}
