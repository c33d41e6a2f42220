-- Nexmark q0, pass-through: every bid, unchanged. Measures the cost of reading and writing.
-- Standard definition (Flink nexmark q0): SELECT auction, bidder, price, dateTime, extra FROM bid.
-- No departure.
-- Run: sluice run sql/nexmark/q0.sql --trigger available-now (10 million events; the sink
-- prints the first 20 rows of each batch). The tables are the three views of one generated event
-- stream (README, "connector = 'nexmark'"); columns are Beam's in snake_case (date_time, ...).

CREATE TABLE bid (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', stream = 'bid', num_events = '10000000');
CREATE TABLE nexmark_q0 WITH (connector = 'console', output_mode = 'append');

INSERT INTO nexmark_q0
SELECT auction, bidder, price, date_time, extra FROM bid;
