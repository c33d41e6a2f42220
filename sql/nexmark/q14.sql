-- Nexmark q14, calculation: bids between 1M and 50M euros (price × 0.908), with the time of day
-- of the bid and the number of 'c' in extra.
-- Departures: the standard query counts the 'c's with a user-defined scalar function
-- count_char(extra, 'c'); sluice has no SQL UDF registration, so it is
-- length(extra) - length(replace(extra, 'c', '')), the same number. HOUR(dateTime) is
-- extract(hour FROM date_time) (UTC). 0.908 * price is a DOUBLE (a DECIMAL in Flink).
-- Run: sluice run sql/nexmark/q14.sql --trigger available-now (10 million events; the sink
-- prints the first 20 rows of each batch). The tables are the three views of one generated event
-- stream (README, "connector = 'nexmark'"); columns are Beam's in snake_case (date_time, ...).

CREATE TABLE bid (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', stream = 'bid', num_events = '10000000');
CREATE TABLE nexmark_q14 WITH (connector = 'console', output_mode = 'append');

INSERT INTO nexmark_q14
SELECT auction, bidder, 0.908 * price AS price,
  CASE
    WHEN extract(hour FROM date_time) >= 8 AND extract(hour FROM date_time) <= 18 THEN 'dayTime'
    WHEN extract(hour FROM date_time) <= 6 OR extract(hour FROM date_time) >= 20 THEN 'nightTime'
    ELSE 'otherTime'
  END AS bid_time_type,
  date_time, extra, length(extra) - length(replace(extra, 'c', '')) AS c_counts
FROM bid
WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000;
