"""The service layer: App and settings, the runtime on Kafka (`runtime/`), the micro-batch
driver, sources and sinks, dead letters, status, metrics and HTTP endpoints, replay, the CLI
and the local servers for development (`local/`, used only by the CLI and tests)."""
