"""The Weir runtime: App, worker, Kafka I/O, checkpoints, sinks, metrics, CLI, local servers."""
