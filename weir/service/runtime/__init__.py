"""The runtime that runs agents on Kafka.

- `worker`: every agent of an app until stopped (the composition of the rest);
- `topology`: the stages of an agent that repartitions;
- `runner`: one agent's group membership (through its `KafkaSource`), tasks, micro-batch loop
  and triggers;
- `batch`: a task's micro-batch through the driver, into what its checkpoint writes;
- `checkpoint`: one micro-batch made durable, all or nothing (the exactly-once protocol);
- `tasks`: a task per input partition, opened by fencing its previous owner and restoring;
- `restore`: a task's state from its changelog;
- `triggers`: when an available-now run is done;
- `failures`: what goes wrong and how it is retried;
- `progress`: progress records and metrics of committed batches;
- `topics`: creating topics, their limits, deleting consumed repartition records.
"""
