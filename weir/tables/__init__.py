"""State and event time: the builder (`stream`), plans (`plan`), queries and their executor
(`query`), the operators (`ops/`), state stores and their byte layout (`state/`), watermarks,
windows and time.

Pure logic over a state transaction: nothing in this package does I/O or talks to Kafka
(`tests/test_layers.py` keeps it so).
"""
