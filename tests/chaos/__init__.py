"""The chaos suite (issue #13): each shipped pipeline kind (a tumbling-window count, dedup, a
stream-stream join) runs on its own real broker with several `weir worker` processes per app
on 4-partition inputs, while the test SIGKILLs workers at random moments while output is being
committed (and restarts them), lets a third worker join (a clean rebalance), and SIGKILLs the
broker itself and restarts it on the same folder and port. The same input is processed in the
same run by an exactly_once app and an at_least_once app; afterwards a read_committed reader
compares each output with a brute-force recomputation from the input: exactly_once has no
duplicate, no loss and no open transaction left (last stable offset = high watermark on every
partition of every topic the app wrote); at_least_once has no loss, its duplicates counted.

Each test prints one summary line per pipeline and guarantee, e.g.
`chaos tumbling exactly_once: in=4800 out=410 duplicates=0 lost=0 worker_kills=3 rebalances=1
broker_kills=1 seed=...`.

`WEIR_CHAOS_SEED=<int>` replays a run's schedule and input (the seed is in the summary line);
`WEIR_CHAOS_LONG=1` runs the long version: more waves of input, more records, more kills and a
second broker kill (several minutes longer; the default is sized for CI, a few minutes for
the whole suite).
"""
