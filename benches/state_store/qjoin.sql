-- Every bid joined with its auction, with no time bound: the join buffers every bid and every
-- auction for ever (9.2 million bids at 10M events, each with its URL and Nexmark's ~100-byte
-- `extra`: about 200 bytes a row), the
-- case for state larger than memory: on the in-memory store the process grows with the state; on
-- RocksDB (`--state-store rocksdb`) the rows, the key index and the eviction index are on disk
-- and the process stays near the block cache's budget.
-- Run: sluice bench nexmark --dir benches/state_store --query qjoin --state-store rocksdb
CREATE TABLE auction (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', stream = 'auction', num_events = '10000000');
CREATE TABLE bid (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', stream = 'bid', num_events = '10000000');
CREATE TABLE nexmark_qjoin WITH (connector = 'console', output_mode = 'append');

INSERT INTO nexmark_qjoin
SELECT b.auction, b.bidder, b.price, b.url, b.extra, a.seller, a.category
FROM bid AS b INNER JOIN auction AS a ON b.auction = a.id;
