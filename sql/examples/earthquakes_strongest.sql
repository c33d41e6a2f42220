-- USGS earthquakes: the three strongest events of each type (earthquake, explosion, quarry
-- blast) so far, kept up to date as the feed is polled (data/earthquakes, public domain). The
-- inner ROW_NUMBER pattern deduplicates the feed's repeated deliveries (Spark's dropDuplicates,
-- as in earthquakes_dedup.sql); the outer one is a top-N per type: each batch emits, for every
-- type whose ranking it changed, the rows from the first rank a new event took down to rank 3
-- (a sink upserts them by type and rank). Of two events of equal magnitude the earlier ranks
-- first.
--
--   cargo run --release -- run sql/examples/earthquakes_strongest.sql --trigger available-now

CREATE TABLE earthquakes (
    id     STRING,
    "time" TIMESTAMP,
    mag    DOUBLE,
    place  STRING,
    type   STRING,
    WATERMARK FOR "time" AS "time" - INTERVAL '1' HOUR
) WITH (connector = 'file', path = 'data/earthquakes', format = 'json', max_files_per_trigger = '1');

CREATE TABLE strongest WITH (connector = 'console', output_mode = 'update', num_rows = '10', truncate = 'false');

INSERT INTO strongest
SELECT type, rank, mag, "time", place, id
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY type ORDER BY mag DESC NULLS LAST, "time") AS rank
  FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY id, "time" ORDER BY "time") AS rn FROM earthquakes) AS polled
  WHERE rn = 1
) AS ranked
WHERE rank <= 3;
