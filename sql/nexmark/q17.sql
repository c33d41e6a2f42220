-- Nexmark q17, auction statistics: per auction and day, the number of bids overall and by price
-- range, and the minimum, maximum, average and total price.
-- Departure: none in meaning; the result is a complete-mode table (Flink's is an updating
-- table); avg(price) is a DOUBLE (Flink's is a BIGINT, the integer average).
-- Run: sluice run sql/nexmark/q17.sql --trigger available-now (10 million events; the sink
-- prints the first 20 rows of each batch). The tables are the three views of one generated event
-- stream (README, "connector = 'nexmark'"); columns are Beam's in snake_case (date_time, ...).

CREATE TABLE bid (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', stream = 'bid', num_events = '10000000');
CREATE TABLE nexmark_q17 WITH (connector = 'console', output_mode = 'complete');

INSERT INTO nexmark_q17
SELECT auction, date_format(date_time, 'yyyy-MM-dd') AS day,
  count(*) AS total_bids,
  count(*) FILTER (WHERE price < 10000) AS rank1_bids,
  count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids,
  count(*) FILTER (WHERE price >= 1000000) AS rank3_bids,
  min(price) AS min_price,
  max(price) AS max_price,
  avg(price) AS avg_price,
  sum(price) AS sum_price
FROM bid
GROUP BY auction, date_format(date_time, 'yyyy-MM-dd');
