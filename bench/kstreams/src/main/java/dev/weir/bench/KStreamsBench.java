package dev.weir.bench;

import java.io.FileWriter;
import java.io.IOException;
import java.io.PrintWriter;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KStream;

/**
 * The Kafka Streams peer of Weir's bench: one workload (tumbling, tumbling_wide, sliding,
 * dedup, join) over the bench's input topics, one stream thread, RocksDB stores, the given
 * guarantee and commit interval. It appends progress marks {"n": records processed, "wall":
 * epoch seconds} to a file at the 1st record, every tenth of the input, its half and its last
 * record; it runs until stopped (SIGTERM closes it).
 *
 * <p>Arguments: workload bootstrap application-id guarantee commit-interval-ms state-dir
 * marks-file total-records output-topic input-topic [second-input-topic]
 */
public final class KStreamsBench {
  private KStreamsBench() {}

  /** Counts records as the source nodes hand them on and writes the progress marks. */
  static final class Marks {
    private final PrintWriter out;
    private final long total;
    private long seen;

    Marks(String path, long total) throws IOException {
      this.out = new PrintWriter(new FileWriter(path, true));
      this.total = total;
    }

    void count() {
      seen++;
      if (seen == 1 || seen == total || seen == total / 2 || seen % Math.max(1, total / 10) == 0) {
        out.printf("{\"n\": %d, \"wall\": %.6f}%n", seen, System.currentTimeMillis() / 1000.0);
        out.flush();
      }
    }
  }

  public static void main(String[] args) throws Exception {
    if (args.length < 10) {
      System.err.println("usage: workload bootstrap app-id guarantee commit-ms state-dir marks"
          + " total output input [input2]");
      System.exit(2);
    }
    String workload = args[0];
    Marks marks = new Marks(args[6], Long.parseLong(args[7]));
    String output = args[8];
    StreamsBuilder builder = new StreamsBuilder();
    Consumed<byte[], byte[]> raw = Consumed.with(Serdes.ByteArray(), Serdes.ByteArray());
    KStream<byte[], byte[]> source = builder.stream(args[9], raw);
    // sliding counts its records after the repartition topic, where its aggregation reads them
    KStream<byte[], byte[]> in =
        workload.equals("sliding") ? source : source.peek((k, v) -> marks.count());
    switch (workload) {
      case "tumbling" -> Workloads.windowed(in, output, "action", null);
      case "tumbling_wide" -> Workloads.windowed(in, output, "user_id", null);
      case "sliding" -> Workloads.windowed(in, output, "user_id", marks::count);
      case "dedup" -> Workloads.dedup(builder, in, output);
      case "join" -> {
        KStream<byte[], byte[]> second =
            builder.stream(args[10], raw).peek((k, v) -> marks.count());
        Workloads.join(in, second, output);
      }
      default -> {
        System.err.println("unknown workload " + workload);
        System.exit(2);
      }
    }

    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[2]);
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, args[3]);
    props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Long.parseLong(args[4]));
    props.put(StreamsConfig.STATE_DIR_CONFIG, args[5]);
    props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");

    KafkaStreams streams = new KafkaStreams(builder.build(), props);
    CountDownLatch done = new CountDownLatch(1);
    int[] exit = {0};
    streams.setUncaughtExceptionHandler(e -> {
      e.printStackTrace();
      exit[0] = 1;
      return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
    });
    streams.setStateListener((now, before) -> {
      if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
        done.countDown();
      }
    });
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      streams.close(Duration.ofSeconds(15));
      done.countDown();
    }));
    streams.start();
    done.await();
    streams.close(Duration.ofSeconds(15));
    System.exit(exit[0]);
  }
}
