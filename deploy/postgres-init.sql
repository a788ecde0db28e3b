-- One database per service (docker-compose deployment).
CREATE DATABASE backstop_registry;
CREATE DATABASE backstop_datasync;
CREATE DATABASE backstop_risk;
CREATE DATABASE backstop_assistance;
CREATE DATABASE backstop_notify;
CREATE DATABASE backstop_quality;
