-- Nexmark q11, user sessions: how many bids each bidder made in each of their sessions (a gap
-- of 10 s without bids ends a session).
-- Departure: SESSION(dateTime, INTERVAL '10' SECOND) with SESSION_START / SESSION_END is
-- session_window(date_time, '10 seconds') with session_window.start / .end (Spark's form).
-- Run: sluice run sql/nexmark/q11.sql --trigger available-now (10 million events; the sink
-- prints the first 20 rows of each batch). The tables are the three views of one generated event
-- stream (README, "connector = 'nexmark'"); columns are Beam's in snake_case (date_time, ...).

CREATE TABLE bid (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', stream = 'bid', num_events = '10000000');
CREATE TABLE nexmark_q11 WITH (connector = 'console', output_mode = 'append');

INSERT INTO nexmark_q11
SELECT bidder, count(*) AS bid_count, session_window.start AS starttime, session_window.end AS endtime
FROM bid
GROUP BY bidder, session_window(date_time, '10 seconds');
