package dev.weir.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import static java.nio.charset.StandardCharsets.UTF_8;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.time.Duration;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.JoinWindows;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Repartitioned;
import org.apache.kafka.streams.kstream.StreamJoined;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.Stores;
import org.apache.kafka.streams.state.WindowStore;

/**
 * The bench's queries (bench/pipelines.py) in the Kafka Streams DSL. Event time is the record
 * timestamp, which the bench's data sets set to the event-time field of each record.
 */
final class Workloads {
  static final ObjectMapper JSON = new ObjectMapper();
  static final Duration WINDOW = Duration.ofMinutes(10);
  static final Duration SLIDE = Duration.ofMinutes(5);
  /** Weir's watermark delay of the window queries, as the windows' grace. */
  static final Duration WINDOW_GRACE = Duration.ofMinutes(5);
  /** Weir's dedup watermark delay: how long a seen (event_id, event_ts) is kept. */
  static final Duration DEDUP_HORIZON = Duration.ofMinutes(15);
  static final Duration JOIN_RANGE = Duration.ofHours(4);
  /** The larger of the join's two watermark delays (orders 1 hour, payments 2 hours). */
  static final Duration JOIN_GRACE = Duration.ofHours(2);

  private Workloads() {}

  static JsonNode parse(byte[] value) {
    try {
      return JSON.readTree(value);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  static byte[] write(JsonNode node) {
    try {
      return JSON.writeValueAsBytes(node);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** Count and sum of one window: 16 bytes in the store. */
  record Agg(long count, double sum) {}

  static final Serde<Agg> AGG = Serdes.serdeFrom(
      (topic, a) -> ByteBuffer.allocate(16).putLong(a.count()).putDouble(a.sum()).array(),
      (topic, b) -> {
        ByteBuffer buf = ByteBuffer.wrap(b);
        return new Agg(buf.getLong(), buf.getDouble());
      });

  /**
   * Count and sum of `amount` per (`field`, 10-minute window) with a 5-minute grace, every
   * update (the record cache's flush at each commit) out as {field, window_start (epoch ms),
   * event_count, total_amount}. Tumbling windows group by the record key, which the data set
   * sets to `field`. With `slidingCount`, sliding windows (10 minutes every 5) re-keyed by
   * `field` through the repartition topic "by-user" (as Kafka Streams requires for a new
   * grouping key), `slidingCount` run for each record read back from it.
   */
  static void windowed(KStream<byte[], byte[]> in, String output, String field,
      Runnable slidingCount) {
    TimeWindows windows = TimeWindows.ofSizeAndGrace(WINDOW, WINDOW_GRACE);
    KStream<byte[], Double> amounts;
    if (slidingCount != null) {
      windows = windows.advanceBy(SLIDE);
      amounts = in.map((k, v) -> {
            JsonNode row = parse(v);
            return KeyValue.pair(
                row.get(field).asText().getBytes(UTF_8), row.get("amount").asDouble());
          })
          .repartition(Repartitioned.<byte[], Double>as("by-user")
              .withKeySerde(Serdes.ByteArray()).withValueSerde(Serdes.Double()))
          .peek((k, v) -> slidingCount.run());
    } else {
      amounts = in.mapValues(v -> parse(v).get("amount").asDouble());
    }
    amounts
        .groupByKey(Grouped.with(Serdes.ByteArray(), Serdes.Double()))
        .windowedBy(windows)
        .aggregate(
            () -> new Agg(0, 0.0),
            (k, amount, a) -> new Agg(a.count() + 1, a.sum() + amount),
            Materialized.with(Serdes.ByteArray(), AGG))
        .toStream()
        .map((wk, a) -> {
          ObjectNode row = JSON.createObjectNode();
          row.put(field, new String(wk.key(), UTF_8));
          row.put("window_start", wk.window().start());
          row.put("event_count", a.count());
          row.put("total_amount", a.sum());
          return KeyValue.pair(wk.key(), write(row));
        })
        .to(output, Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));
  }

  /**
   * Each record whose (event_id, event_ts) was not seen within the last 15 minutes of event
   * time, out unchanged; the seen pairs live in a RocksDB window store whose old segments
   * are dropped past the horizon.
   */
  static void dedup(StreamsBuilder builder, KStream<byte[], byte[]> in, String output) {
    builder.addStateStore(Stores.windowStoreBuilder(
        Stores.persistentWindowStore("seen", DEDUP_HORIZON, Duration.ofMillis(1), false),
        Serdes.String(), Serdes.Long()));
    in.process(Dedup::new, "seen")
        .to(output, Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));
  }

  static final class Dedup implements Processor<byte[], byte[], byte[], byte[]> {
    private ProcessorContext<byte[], byte[]> context;
    private WindowStore<String, Long> seen;

    @Override
    public void init(ProcessorContext<byte[], byte[]> context) {
      this.context = context;
      this.seen = context.getStateStore("seen");
    }

    @Override
    public void process(Record<byte[], byte[]> record) {
      JsonNode row = parse(record.value());
      String key = row.get("event_id").asText() + "|" + row.get("event_ts").asText();
      long ts = record.timestamp();
      if (seen.fetch(key, ts) == null) {
        seen.put(key, ts, ts);
        context.forward(record);
      }
    }
  }

  /**
   * orders ⋈ payments on the record key (order_id), the payment's timestamp within [order's,
   * order's + 4 hours]; each pair out as the union of both records' fields.
   */
  static void join(KStream<byte[], byte[]> orders, KStream<byte[], byte[]> payments,
      String output) {
    orders
        .join(
            payments,
            (o, p) -> {
              ObjectNode row = (ObjectNode) parse(o);
              row.setAll((ObjectNode) parse(p));
              return write(row);
            },
            JoinWindows.ofTimeDifferenceAndGrace(JOIN_RANGE, JOIN_GRACE).before(Duration.ZERO),
            StreamJoined.with(Serdes.ByteArray(), Serdes.ByteArray(), Serdes.ByteArray()))
        .to(output, Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));
  }
}
