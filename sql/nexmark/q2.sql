-- Nexmark q2, selection: the bids on auctions whose id is a multiple of 123.
-- Departure: MOD(auction, 123) is written auction % 123 (same meaning for the positive ids).
-- Run: sluice run sql/nexmark/q2.sql --trigger available-now (10 million events; the sink
-- prints the first 20 rows of each batch). The tables are the three views of one generated event
-- stream (README, "connector = 'nexmark'"); columns are Beam's in snake_case (date_time, ...).

CREATE TABLE bid (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', stream = 'bid', num_events = '10000000');
CREATE TABLE nexmark_q2 WITH (connector = 'console', output_mode = 'append');

INSERT INTO nexmark_q2
SELECT auction, price FROM bid WHERE auction % 123 = 0;
