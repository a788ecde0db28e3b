#!/bin/bash
# Starts the secured broker of compose.yml: fills in server.properties, formats the
# storage with the SCRAM users on first start, grants the services' user its ACLs.
set -euo pipefail
KAFKA=/opt/kafka/bin
CONFIG=/tmp/server.properties
sed -e "s|@ADMIN_PASSWORD@|${KAFKA_ADMIN_PASSWORD}|" -e "s|@TLS_PASSWORD@|${KAFKA_TLS_PASSWORD}|" \
    /opt/backstop/server.properties > "$CONFIG"
cat > /tmp/admin.properties <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${KAFKA_ADMIN_PASSWORD}";
ssl.truststore.type=PEM
ssl.truststore.location=/etc/kafka/secrets/ca.pem
PROPS
"$KAFKA/kafka-storage.sh" format --ignore-formatted -t "$KAFKA_CLUSTER_ID" -c "$CONFIG" \
    --add-scram "SCRAM-SHA-512=[name=admin,password=${KAFKA_ADMIN_PASSWORD}]" \
    --add-scram "SCRAM-SHA-512=[name=backstop,password=${KAFKA_BACKSTOP_PASSWORD}]"

grant() {
    until "$KAFKA/kafka-broker-api-versions.sh" --bootstrap-server kafka:9094 \
        --command-config /tmp/admin.properties >/dev/null 2>&1; do sleep 2; done
    acl=("$KAFKA/kafka-acls.sh" --bootstrap-server kafka:9094 --command-config /tmp/admin.properties
         --add --allow-principal User:backstop)
    # The contract topics and their DLQs (registry.households, risk.alerts.dlq, ...).
    for family in registry. datasync. risk. assistance. notify. quality. kernel.; do
        "${acl[@]}" --resource-pattern-type prefixed --topic "$family" \
            --operation Read --operation Write --operation Describe --operation Create
    done
    # The services' consumer groups (named after the consuming service).
    for group in registry datasync risk assistance notify quality; do
        "${acl[@]}" --resource-pattern-type prefixed --group "$group" --operation Read
    done
}
grant &
exec "$KAFKA/kafka-server-start.sh" "$CONFIG"
