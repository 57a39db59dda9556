"""quixstreams peer (run in its own venv, see bench/peers.py): 10-minute tumbling count and
sum per key (the action) with a 5-minute grace, on the Kafka timestamp (= event time),
emitting every update (`.current()`) to an output topic.

argv: bootstrap input_topic output_topic group guarantee n_records state_dir marks_file.
Writes the wall time of the first and of the n-th processed record to `marks_file`."""

import json
import sys
import time
from datetime import timedelta

from quixstreams import Application
from quixstreams.dataframe.windows.aggregations import Count, Sum


def main() -> None:
    """Run the quixstreams application until SIGTERM."""
    bootstrap, topic, out, group, guarantee, n, state_dir, marks = sys.argv[1:9]
    total = int(n)
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        processing_guarantee=guarantee,
        state_dir=state_dir,
        loglevel="WARNING",
    )
    src = app.topic(topic, key_deserializer="string", value_deserializer="json")
    dst = app.topic(out, value_serializer="json")
    seen = [0]

    def mark(_value: object) -> None:
        seen[0] += 1
        if seen[0] == 1 or seen[0] == total:
            with open(marks, "a") as f:
                f.write(json.dumps({"n": seen[0], "wall": time.time()}) + "\n")

    sdf = app.dataframe(src)
    sdf = sdf.update(mark)
    sdf = (
        sdf.tumbling_window(timedelta(minutes=10), grace_ms=timedelta(minutes=5))
        .agg(event_count=Count(), total_amount=Sum("amount"))
        .current()
    )
    sdf.to_topic(dst)
    app.run()


if __name__ == "__main__":
    main()
