-- Deduplication of every bid by (auction, bidder, price, extra), no watermark on the keys:
-- state grows with the bids (one key each), the case for state larger than memory.
CREATE TABLE bid (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', stream = 'bid', num_events = '10000000');
CREATE TABLE nexmark_qdedup WITH (connector = 'console', output_mode = 'append');

INSERT INTO nexmark_qdedup
SELECT auction, bidder, price, extra FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY auction, bidder, price, extra ORDER BY date_time) AS rn FROM bid
) WHERE rn = 1;
