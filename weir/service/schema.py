"""Input schemas (moved to weir.tables.schema, pure logic); this module re-exports them."""

from weir.tables.schema import Mode, Schema, SchemaError, as_schema

__all__ = ["Mode", "Schema", "SchemaError", "as_schema"]
