-- Hourly departure-delay statistics per origin airport and carrier, over the January 2013
-- flights out of New York (nycflights13, CC0), read as a stream: one file per arrival day, one
-- file per micro-batch, rows in the order the flights actually departed.
--
-- Event time is the scheduled departure. A flight "arrives" in the stream when it departs, so a
-- row is as late as its departure delay: p50 2 min, p90 49 min, p99 3 h (data/NOTICE.md). A
-- 3-hour watermark delay would keep about 99% of rows arriving one by one; here a micro-batch is a
-- day, and a batch drops rows by the previous batch's watermark, so only rows more than about a
-- day late are dropped (counted in the progress line as "late dropped"; none in January). Append
-- mode: each hour's row is printed once, when the watermark passes the end of the hour.
--
--   cargo run --release -- run sql/examples/flight_delays.sql --trigger available-now

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
    connector = 'file',
    path = 'data/flights',
    format = 'json',
    max_files_per_trigger = '1'
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
