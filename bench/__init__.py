"""Weir's benchmark suite (`make bench` = `python -m bench`; not part of `make test`).

One run starts its own local Kafka broker in a temporary folder, measures the raw aiokafka
limit, Weir's worker on the course pipelines under both processing guarantees, the peers
(quixstreams, faust-streaming) on the same input records, Kafka Streams (bench/kstreams, built
with Maven into the per-user cache) on the same topics, replay mode, end-to-end latency,
restore time and state memory, then prints a table and writes `bench/results.json`.
"""
