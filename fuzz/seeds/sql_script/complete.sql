CREATE TABLE events (k STRING, ts TIMESTAMP, v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '10' SECOND)
  WITH (connector = 'file', path = 'events', format = 'json', max_files_per_trigger = '1');
CREATE TABLE out WITH (connector = 'console', num_rows = '5', truncate = 'false', output_mode = 'complete');
INSERT INTO out
SELECT k, count(*) AS n, approx_distinct(v) AS d, collect_list(v) AS l FROM events GROUP BY k ORDER BY k LIMIT 3;
