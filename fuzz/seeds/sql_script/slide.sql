CREATE TABLE events (k STRING, ts TIMESTAMP, v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '10' SECOND)
  WITH (connector = 'file', path = 'events', format = 'json', max_files_per_trigger = '1');
CREATE TABLE out WITH (connector = 'file', path = 'out', format = 'csv', output_mode = 'update');
INSERT INTO out
SELECT window.start AS ws, k, count(*) AS n, max(v) AS m FROM events GROUP BY window(ts, '10 seconds', '5 seconds'), k;
