"""Ingest context: devices and their keys, HTTP ingest, the MQTT bridge, file imports, health."""
