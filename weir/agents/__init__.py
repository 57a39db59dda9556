"""The pipelines, one module each."""
