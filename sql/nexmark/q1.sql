-- Nexmark q1, currency conversion: every bid with its price in euros (dollars × 0.908).
-- Departure: 0.908 * price is a DOUBLE (DataFusion reads 0.908 as a DOUBLE literal); Flink's is a
-- DECIMAL.
-- Run: sluice run sql/nexmark/q1.sql --trigger available-now (10 million events; the sink
-- prints the first 20 rows of each batch). The tables are the three views of one generated event
-- stream (README, "connector = 'nexmark'"); columns are Beam's in snake_case (date_time, ...).

CREATE TABLE bid (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', stream = 'bid', num_events = '10000000');
CREATE TABLE nexmark_q1 WITH (connector = 'console', output_mode = 'append');

INSERT INTO nexmark_q1
SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid;
