-- Nexmark q8, monitor new users: the people who registered and opened an auction in the same
-- tumbling window of 10 s.
-- Departure: TUMBLE(...) is window(date_time, '10 seconds') in GROUP BY and the two sides join on
-- the window struct instead of on its start and end (the same pairs).
-- Run: sluice run sql/nexmark/q8.sql --trigger available-now (10 million events; the sink
-- prints the first 20 rows of each batch). The tables are the three views of one generated event
-- stream (README, "connector = 'nexmark'"); columns are Beam's in snake_case (date_time, ...).

CREATE TABLE person (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', stream = 'person', num_events = '10000000');
CREATE TABLE auction (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', stream = 'auction', num_events = '10000000');
CREATE TABLE nexmark_q8 WITH (connector = 'console', output_mode = 'append');

INSERT INTO nexmark_q8
SELECT p.id, p.name, p.starttime
FROM (
  SELECT id, name, window, window.start AS starttime
  FROM person
  GROUP BY id, name, window(date_time, '10 seconds')
) AS p
JOIN (
  SELECT seller, window
  FROM auction
  GROUP BY seller, window(date_time, '10 seconds')
) AS a
ON p.id = a.seller AND p.window = a.window;
