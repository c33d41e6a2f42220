-- The course's first program: a running count of the words typed into a TCP server, as Spark's
-- structured streaming word count reads them (spark.readStream.format("socket")). In one
-- terminal start a server and type lines into it:
--
--   nc -lk 9999
--
-- and in another run the query; each micro-batch prints every word's count so far:
--
--   cargo run --release -- run sql/examples/socket_word_count.sql
--
-- The socket source is for tests and demos: it cannot replay its lines, so lines received but not
-- committed when the query stops are lost, even with --checkpoint (sluice warns at start, as Spark
-- does). Spark's split(value, ' ') is DataFusion's string_to_array(value, ' ').

CREATE TABLE lines WITH (connector = 'socket', host = 'localhost', port = '9999');

CREATE TABLE word_counts WITH (connector = 'console', output_mode = 'complete');

INSERT INTO word_counts
SELECT word, count(*) AS count
FROM (SELECT explode(string_to_array(value, ' ')) AS word FROM lines)
GROUP BY word;
