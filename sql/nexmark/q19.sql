-- Nexmark q19, auction TOP-10 price: for each auction, its ten highest bids, with their rank.
-- Departure: ORDER BY price DESC, date_time (Flink's has only price DESC): among bids of equal
-- price the earlier ranks first, which is what sluice does for rows of equal order arriving in
-- event-time order, written out so that the batch query it is checked against ranks ties the
-- same way. ROW_NUMBER() ... <= 10 over the stream runs as a top-N per key; the result is an
-- updating table, so the sink is in update mode: each batch emits, per auction, the ranks it
-- changed (a new bid at rank 3 moves ranks 3 to 10), upserted by (auction, rank_number).
-- Run: sluice run sql/nexmark/q19.sql --trigger available-now (10 million events; the sink
-- prints the first 20 rows of each batch). The tables are the three views of one generated event
-- stream (README, "connector = 'nexmark'"); columns are Beam's in snake_case (date_time, ...).

CREATE TABLE bid (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', stream = 'bid', num_events = '10000000');
CREATE TABLE nexmark_q19 WITH (connector = 'console', output_mode = 'update');

INSERT INTO nexmark_q19
SELECT *
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC, date_time) AS rank_number
  FROM bid
) AS ranked
WHERE rank_number <= 10;
