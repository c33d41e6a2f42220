-- Nexmark q22, get URL directories: every bid with the first three directories of its URL.
-- Departure: Flink's SPLIT_INDEX(url, '/', 3) (0-based) is split_part(url, '/', 4) (1-based);
-- on a URL with fewer parts it gives '' where Flink gives NULL (every generated URL has them).
-- Run: sluice run sql/nexmark/q22.sql --trigger available-now (10 million events; the sink
-- prints the first 20 rows of each batch). The tables are the three views of one generated event
-- stream (README, "connector = 'nexmark'"); columns are Beam's in snake_case (date_time, ...).

CREATE TABLE bid (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', stream = 'bid', num_events = '10000000');
CREATE TABLE nexmark_q22 WITH (connector = 'console', output_mode = 'append');

INSERT INTO nexmark_q22
SELECT auction, bidder, price, channel,
  split_part(url, '/', 4) AS dir1,
  split_part(url, '/', 5) AS dir2,
  split_part(url, '/', 6) AS dir3
FROM bid;
