CREATE TABLE events (k STRING, ts TIMESTAMP, v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '10' SECOND)
  WITH (connector = 'file', path = 'events', format = 'json', max_files_per_trigger = '1');
CREATE TABLE other (k STRING, ts TIMESTAMP, v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
  WITH (connector = 'file', path = 'other', format = 'json');
CREATE TABLE out WITH (connector = 'file', path = 'out', format = 'json');
INSERT INTO out
SELECT a.k, a.ts, b.v FROM events a LEFT JOIN other b ON a.k = b.k AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '20' SECOND;
