"""Context hub: NGSI-LD entities, attributes and their history; the NGSI-LD API."""
