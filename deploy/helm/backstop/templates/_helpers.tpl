{{- define "backstop.name" -}}
{{- printf "%s" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "backstop.labels" -}}
app.kubernetes.io/name: backstop
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Pods of one service and role: (dict "root" $ "service" "risk" "role" "api") */}}
{{- define "backstop.selector" -}}
app.kubernetes.io/name: backstop
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .service }}
backstop.io/role: {{ .role }}
{{- end -}}

{{/* A service's settings merged over the defaults: (dict "root" $ "service" "risk" "role" "api") */}}
{{- define "backstop.role" -}}
{{- $svc := index .root.Values.services .service | default dict -}}
{{- $role := deepCopy (index .root.Values.defaults .role) -}}
{{- toYaml (mergeOverwrite $role (index $svc .role | default dict)) -}}
{{- end -}}

{{/* The environment every Backstop process gets (settings.py): (dict "root" $ "service" "risk") */}}
{{- define "backstop.env" -}}
{{- $v := .root.Values -}}
- name: BACKSTOP_ENV
  value: production
- name: BACKSTOP_SERVICE
  value: {{ .service | quote }}
- name: BACKSTOP_LOG_LEVEL
  value: {{ $v.logLevel | quote }}
- name: BACKSTOP_JWT_SECRET
  valueFrom:
    secretKeyRef: {name: {{ $v.appSecret.name }}, key: {{ $v.appSecret.jwtSecretKey }}}
- name: BACKSTOP_PII_KEY
  valueFrom:
    secretKeyRef: {name: {{ $v.appSecret.name }}, key: {{ $v.appSecret.piiKeyKey }}}
- name: BACKSTOP_SECRETS_KEY
  valueFrom:
    secretKeyRef: {name: {{ $v.appSecret.name }}, key: {{ $v.appSecret.secretsKeyKey }}}
- name: PGHOST
  value: {{ $v.postgresql.host | quote }}
- name: PGPORT
  value: {{ $v.postgresql.port | int | quote }}
- name: PGSSLMODE
  value: {{ $v.postgresql.sslmode | quote }}
- name: BACKSTOP_DB_POOL_SIZE
  value: {{ $v.postgresql.poolSize | int | quote }}
- name: PGUSER
  valueFrom:
    secretKeyRef: {name: {{ $v.postgresql.existingSecret }}, key: {{ $v.postgresql.usernameKey }}}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $v.postgresql.existingSecret }}, key: {{ $v.postgresql.passwordKey }}}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ $v.kafka.bootstrapServers | quote }}
- name: KAFKA_SECURITY_PROTOCOL
  value: {{ $v.kafka.securityProtocol | quote }}
- name: BACKSTOP_KAFKA_MAX_MESSAGE_BYTES
  value: {{ $v.kafka.maxMessageBytes | int64 | quote }}
{{- if hasPrefix "SASL" $v.kafka.securityProtocol }}
- name: KAFKA_SASL_MECHANISM
  value: {{ $v.kafka.saslMechanism | quote }}
- name: KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ $v.kafka.existingSecret }}, key: {{ $v.kafka.usernameKey }}}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $v.kafka.existingSecret }}, key: {{ $v.kafka.passwordKey }}}
{{- end }}
{{- if and (hasSuffix "SSL" $v.kafka.securityProtocol) $v.kafka.caSecret }}
- name: KAFKA_SSL_CAFILE
  value: /etc/backstop/kafka-ca/{{ $v.kafka.caKey }}
{{- end }}
{{- if $v.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $v.otel.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $v.otel.protocol | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "backstop-%s" .service | quote }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "backstop.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if and (hasSuffix "SSL" .Values.kafka.securityProtocol) .Values.kafka.caSecret }}
- name: kafka-ca
  mountPath: /etc/backstop/kafka-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "backstop.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if and (hasSuffix "SSL" .Values.kafka.securityProtocol) .Values.kafka.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.caSecret }}
{{- end }}
{{- end -}}
