SET spark.sql.shuffle.partitions = 100000000000;
CREATE TABLE events (k STRING, ts TIMESTAMP, v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '10' SECOND)
  WITH (connector = 'file', path = 'events', format = 'json', max_files_per_trigger = '1');
CREATE TABLE out WITH (connector = 'file', path = 'out', format = 'json', output_mode = 'append');
INSERT INTO out
SELECT window.start AS ws, window.end AS we, k, count(*) AS n, sum(v) AS s FROM events GROUP BY window(ts, '10 seconds'), k;
