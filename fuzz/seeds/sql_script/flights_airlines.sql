-- Daily departures and mean departure delay per airline, by airline name: the flights stream
-- (January 2013, nycflights13, CC0) joined to the bounded `airlines` table. A stream-static join
-- keeps no state: each micro-batch joins the table afresh. The daily aggregation over it is
-- emitted in append mode once the watermark (3 hours behind the latest scheduled departure)
-- passes the end of the day.
--
--   cargo run --release -- run sql/examples/flights_airlines.sql --trigger available-now

CREATE EXTERNAL TABLE airlines (carrier STRING, name STRING) STORED AS JSON LOCATION 'data/airlines/';

CREATE TABLE flights (
    carrier      STRING,
    sched_dep_ts TIMESTAMP,
    dep_delay    DOUBLE,
    WATERMARK FOR sched_dep_ts AS sched_dep_ts - INTERVAL '3' HOUR
) WITH (connector = 'file', path = 'data/flights', format = 'json', max_files_per_trigger = '1');

CREATE TABLE daily_by_airline WITH (connector = 'console', output_mode = 'append', num_rows = '16', truncate = 'false');

INSERT INTO daily_by_airline
SELECT window.start AS day, name AS airline, count(*) AS flights, round(avg(dep_delay), 1) AS avg_delay_min
FROM (SELECT f.sched_dep_ts, f.dep_delay, a.name FROM flights f JOIN airlines a ON f.carrier = a.carrier) AS j
GROUP BY window(sched_dep_ts, '1 day'), name;
