"""quixstreams peer (run in its own venv, see bench/peers.py): tumbling count and sum per key
(the action) with a grace period, on the Kafka timestamp (= event time), to an output topic,
emitting either every update (`.current()`, like Spark's update mode) or each window once it
closes (`.final()`, like append mode: a window closes once its key's latest timestamp
reaches the window end + grace; windows still open at the end of the input are not emitted).

argv: bootstrap input_topic output_topic group guarantee emit(current|final) n_records
window_ms grace_ms state_dir marks_file. Writes the wall time of the first, of every
PROGRESS_EVERY-th and of the n-th processed record to `marks_file`."""

import json
import sys
import time

from quixstreams import Application
from quixstreams.dataframe.windows.aggregations import Count, Sum

PROGRESS_EVERY = 10_000


def main() -> None:
    """Run the quixstreams application until SIGTERM."""
    bootstrap, topic, out, group, guarantee, emit, n, window_ms, grace_ms, state_dir, marks = (
        sys.argv[1:12]
    )
    if emit not in ("current", "final"):
        raise SystemExit(f"emit must be current or final, not {emit!r}")
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
    dst = app.topic(out, key_serializer="string", value_serializer="json")
    seen = [0]

    def mark(_value: object) -> None:
        seen[0] += 1
        if seen[0] == 1 or seen[0] == total or seen[0] % PROGRESS_EVERY == 0:
            with open(marks, "a") as f:
                f.write(json.dumps({"n": seen[0], "wall": time.time()}) + "\n")

    sdf = app.dataframe(src)
    sdf = sdf.update(mark)
    window = sdf.tumbling_window(int(window_ms), grace_ms=int(grace_ms)).agg(
        event_count=Count(), total_amount=Sum("amount")
    )
    sdf = window.current() if emit == "current" else window.final()
    sdf.to_topic(dst)
    app.run()


if __name__ == "__main__":
    main()
