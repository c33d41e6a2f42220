-- USGS earthquakes, deduplicated: hourly polls of a "past 2 hours" feed deliver each event twice
-- (data/earthquakes, public domain). The ROW_NUMBER pattern plans as Spark's
-- dropDuplicates(id, time): an event is emitted in the batch it first arrives in; its key stays in
-- state until the watermark (1 hour behind the latest event time) passes its time, and a repeat
-- arriving later than that is dropped as late, so no duplicate ever reaches the sink.
--
--   cargo run --release -- run sql/examples/earthquakes_dedup.sql --trigger available-now

CREATE TABLE earthquakes (
    id     STRING,
    "time" TIMESTAMP,
    mag    DOUBLE,
    place  STRING,
    type   STRING,
    WATERMARK FOR "time" AS "time" - INTERVAL '1' HOUR
) WITH (connector = 'file', path = 'data/earthquakes', format = 'json', max_files_per_trigger = '1');

CREATE TABLE unique_quakes WITH (connector = 'console', output_mode = 'append', num_rows = '5', truncate = 'false');

INSERT INTO unique_quakes
SELECT id, "time", mag, place
FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY id, "time" ORDER BY "time") AS rn FROM earthquakes) AS polled
WHERE rn = 1;
