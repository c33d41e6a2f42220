-- Nexmark q5, hot items: for every sliding window of 10 s every 2 s, the auctions with the most
-- bids, with their bid count.
-- Departure: HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND)
-- is sluice's (Spark's) window(date_time, '10 seconds', '2 seconds') in GROUP BY, and the
-- windows of the two counts are joined on the window struct instead of on its start and end
-- (the same pairs). The result is final: a window's rows are emitted once the watermark passes
-- its end.
-- Run: sluice run sql/nexmark/q5.sql --trigger available-now (10 million events; the sink
-- prints the first 20 rows of each batch). The tables are the three views of one generated event
-- stream (README, "connector = 'nexmark'"); columns are Beam's in snake_case (date_time, ...).

CREATE TABLE bid (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', stream = 'bid', num_events = '10000000');
CREATE TABLE nexmark_q5 WITH (connector = 'console', output_mode = 'append');

INSERT INTO nexmark_q5
SELECT auction_bids.auction, auction_bids.num
FROM (
  SELECT auction, count(*) AS num, window
  FROM bid
  GROUP BY auction, window(date_time, '10 seconds', '2 seconds')
) AS auction_bids
JOIN (
  SELECT max(count_bids.num) AS maxn, count_bids.window
  FROM (
    SELECT count(*) AS num, window
    FROM bid
    GROUP BY auction, window(date_time, '10 seconds', '2 seconds')
  ) AS count_bids
  GROUP BY count_bids.window
) AS max_bids
ON auction_bids.window = max_bids.window AND auction_bids.num >= max_bids.maxn;
