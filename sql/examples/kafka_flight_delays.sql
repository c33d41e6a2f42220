-- The main job (sql/examples/flight_delays.sql) over a Kafka topic instead of files: hourly
-- departure-delay statistics per origin airport and carrier. Load the flights first with
--
--   sluice produce --bootstrap-servers localhost:9092 --topic flights --partitions 4 \
--       --key origin data/flights/*.jsonl.gz
--
-- then
--
--   cargo run --release -- run sql/examples/kafka_flight_delays.sql --trigger available-now
--
-- prints the same windows as the file version. The topic is read from the earliest offset, every
-- partition in full in one batch under available-now (add max_offsets_per_trigger to split it).
-- A record's event time is its scheduled departure, as in the file version; Kafka's own
-- `timestamp` (the produce time) could be declared beside it and watermarked instead.

CREATE TABLE flights (
    flight_id    STRING,
    carrier      STRING,
    flight       BIGINT,
    tailnum      STRING,
    origin       STRING,
    dest         STRING,
    sched_dep_ts TIMESTAMP,
    dep_ts       TIMESTAMP,
    dep_delay    DOUBLE,
    arr_delay    DOUBLE,
    distance     DOUBLE,
    status       STRING,
    WATERMARK FOR sched_dep_ts AS sched_dep_ts - INTERVAL '3' HOUR
) WITH (
    connector = 'kafka',
    bootstrap_servers = 'localhost:9092',
    topic = 'flights',
    starting_offsets = 'earliest',
    format = 'json'
);

CREATE TABLE hourly_delays WITH (connector = 'console', output_mode = 'append', num_rows = '10');

INSERT INTO hourly_delays
SELECT window.start                                      AS hour,
       origin,
       carrier,
       count(*)                                          AS flights,
       count(*) FILTER (WHERE status = 'cancelled')      AS cancelled,
       round(avg(dep_delay), 1)                          AS avg_delay_min,
       max(dep_delay)                                    AS max_delay_min,
       round(approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY dep_delay), 1) AS p90_delay_min
FROM flights
GROUP BY window(sched_dep_ts, '1 hour'), origin, carrier;
