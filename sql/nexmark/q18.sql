-- Nexmark q18, last bid: for each bidder and auction, the bidder's latest bid on it.
-- Departure: none in meaning. ROW_NUMBER() ... <= 1 over the stream runs as a top-N per key (here
-- the top 1 by date_time descending); the result is an updating table, so the sink is in update
-- mode: each batch emits the (auction, bidder) pairs whose latest bid it changed (Flink's
-- retractions become update mode's upserts by key). Of two bids of a pair in the same millisecond,
-- the one that arrived first stays first.
-- Run: sluice run sql/nexmark/q18.sql --trigger available-now (10 million events; the sink
-- prints the first 20 rows of each batch). The tables are the three views of one generated event
-- stream (README, "connector = 'nexmark'"); columns are Beam's in snake_case (date_time, ...).

CREATE TABLE bid (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', stream = 'bid', num_events = '10000000');
CREATE TABLE nexmark_q18 WITH (connector = 'console', output_mode = 'update');

INSERT INTO nexmark_q18
SELECT auction, bidder, price, channel, url, date_time, extra
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY date_time DESC) AS rank_number
  FROM bid
) AS ranked
WHERE rank_number <= 1;
