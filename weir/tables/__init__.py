"""State and time: stores, watermarks, windows, aggregations, dedup, joins, arbitrary state.

Pure logic over a state transaction; nothing in this package talks to Kafka.
"""
