-- Nexmark q7, highest bid: for each tumbling window of 10 s, the bids at the window's highest
-- price.
-- Departure: Flink's TUMBLE table function is window(date_time, '10 seconds') in GROUP BY, and
-- the window's time is window_time(window) (its end minus 1 µs, which keeps the watermark, as in
-- Spark) instead of window_end; so the bids kept are those with date_time in
-- [end - 10 s - 1 µs, end - 1 µs], where Flink's BETWEEN end - 10 s AND end also keeps a bid at
-- exactly the end of the window (which belongs to the next window) when its price equals this
-- window's maximum.
-- Run: sluice run sql/nexmark/q7.sql --trigger available-now (10 million events; the sink
-- prints the first 20 rows of each batch). The tables are the three views of one generated event
-- stream (README, "connector = 'nexmark'"); columns are Beam's in snake_case (date_time, ...).

CREATE TABLE bid (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', stream = 'bid', num_events = '10000000');
CREATE TABLE nexmark_q7 WITH (connector = 'console', output_mode = 'append');

INSERT INTO nexmark_q7
SELECT b.auction, b.price, b.bidder, b.date_time, b.extra
FROM bid AS b
JOIN (
  SELECT max(price) AS maxprice, window_time(window) AS date_time
  FROM bid
  GROUP BY window(date_time, '10 seconds')
) AS b1
ON b.price = b1.maxprice
WHERE b.date_time BETWEEN b1.date_time - INTERVAL '10' SECOND AND b1.date_time;
