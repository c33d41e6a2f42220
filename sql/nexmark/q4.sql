-- Nexmark q4, average price per category: the average final price of the auctions of each
-- category, an auction's final price being its highest bid between its start and its expiry.
-- Departure: none in meaning; avg is a DOUBLE (Flink's is a BIGINT, the integer average). The
-- auctions' maxima change as bids arrive, so the outer avg retracts each auction's previous
-- maximum and adds its new one (sluice's aggregation over an updating aggregation, README
-- "Aggregations over aggregations"; Spark refuses this query in every output mode). The join
-- evicts a bid once the auction watermark passes it and an auction once the bid watermark passes
-- its expiry; the aggregation per auction keeps every auction, as Flink's group-by does.
-- Run: sluice run sql/nexmark/q4.sql --trigger available-now (10 million events; the sink
-- prints the first 20 rows of each batch). The tables are the three views of one generated event
-- stream (README, "connector = 'nexmark'"); columns are Beam's in snake_case (date_time, ...).

CREATE TABLE auction (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', stream = 'auction', num_events = '10000000');
CREATE TABLE bid (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', stream = 'bid', num_events = '10000000');
CREATE TABLE nexmark_q4 WITH (connector = 'console', output_mode = 'update');

INSERT INTO nexmark_q4
SELECT q.category, avg(q.final) AS avg_price
FROM (
  SELECT max(b.price) AS final, a.category
  FROM auction AS a JOIN bid AS b ON a.id = b.auction AND b.date_time BETWEEN a.date_time AND a.expires
  GROUP BY a.id, a.category
) AS q
GROUP BY q.category;
