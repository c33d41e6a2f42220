-- Nexmark q3, local item suggestion: who sells in category 10 from Oregon, Idaho or
-- California, as each auction appears (an incremental join of auctions with their sellers).
-- No departure. Both sides are kept in state for ever (the join has no time bound, as in Flink).
-- Run: sluice run sql/nexmark/q3.sql --trigger available-now (10 million events; the sink
-- prints the first 20 rows of each batch). The tables are the three views of one generated event
-- stream (README, "connector = 'nexmark'"); columns are Beam's in snake_case (date_time, ...).

CREATE TABLE person (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', stream = 'person', num_events = '10000000');
CREATE TABLE auction (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', stream = 'auction', num_events = '10000000');
CREATE TABLE nexmark_q3 WITH (connector = 'console', output_mode = 'append');

INSERT INTO nexmark_q3
SELECT p.name, p.city, p.state, a.id
FROM auction AS a INNER JOIN person AS p ON a.seller = p.id
WHERE a.category = 10 AND (p.state = 'OR' OR p.state = 'ID' OR p.state = 'CA');
