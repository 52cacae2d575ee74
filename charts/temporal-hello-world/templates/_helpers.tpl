{{- define "hello.labels" -}}
app.kubernetes.io/part-of: temporal-hello-world
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{- define "hello.secret" -}}{{ .Release.Name }}-temporal-client{{- end }}
{{- define "hello.keysSecret" -}}{{ .Release.Name }}-payload-keys{{- end }}

{{/* Temporal's environment configuration, pointing into the mounted client-certificate Secret. */}}
{{- define "hello.temporalEnv" -}}
- {name: TEMPORAL_ADDRESS, value: "{{ .Values.cluster }}-frontend.{{ .Release.Namespace }}.svc:7233"}
- {name: TEMPORAL_NAMESPACE, value: {{ .Values.temporalNamespace | quote }}}
- {name: TEMPORAL_TLS_SERVER_NAME, value: "{{ .Values.cluster }}-frontend.{{ .Release.Namespace }}.svc"}
- {name: TEMPORAL_TLS_SERVER_CA_CERT_PATH, value: /etc/temporal/client/ca.crt}
- {name: TEMPORAL_TLS_CLIENT_CERT_PATH, value: /etc/temporal/client/tls.crt}
- {name: TEMPORAL_TLS_CLIENT_KEY_PATH, value: /etc/temporal/client/tls.key}
- {name: HELLO_TASK_QUEUE, value: {{ .Values.taskQueue | quote }}}
- {name: PYTHONDONTWRITEBYTECODE, value: "1"}
{{- if .Values.encryption.enabled }}
- {name: TEMPORAL_CODEC_DIR, value: /etc/temporal/codec}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "hello.podSecurity" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
fsGroup: 1000
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{- define "hello.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end }}

{{- define "hello.volumes" -}}
- name: client-certificate
  secret: {secretName: {{ include "hello.secret" . }}, defaultMode: 0440}
- {name: tmp, emptyDir: {}}
{{- if .Values.encryption.enabled }}
- name: payload-keys
  secret: {secretName: {{ include "hello.keysSecret" . }}, defaultMode: 0440}
{{- end }}
{{- end }}

{{- define "hello.mounts" -}}
- {name: client-certificate, mountPath: /etc/temporal/client, readOnly: true}
- {name: tmp, mountPath: /tmp}
{{- if .Values.encryption.enabled }}
- {name: payload-keys, mountPath: /etc/temporal/codec, readOnly: true}
{{- end }}
{{- end }}
