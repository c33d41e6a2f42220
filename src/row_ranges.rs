//! Contiguous runs of rows across a list of record batches: how a micro-batch is split into input
//! partitions and a large sink file into pieces encoded in parallel, so that the runs taken in
//! order are the rows in their original order.

use arrow::record_batch::RecordBatch;

/// The rows of `batches` split into `parts` contiguous runs of (nearly) equal size, in order;
/// batches are sliced, not copied. `parts` is at least 1.
pub(crate) fn split_rows(batches: &[RecordBatch], parts: usize) -> Vec<Vec<RecordBatch>> {
    let parts = parts.max(1);
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    (0..parts).map(|m| rows_between(batches, total * m / parts, total * (m + 1) / parts)).collect()
}

/// Rows `from..to` (counted across `batches`).
fn rows_between(batches: &[RecordBatch], from: usize, to: usize) -> Vec<RecordBatch> {
    let mut rows = Vec::new();
    let mut at = 0;
    for batch in batches {
        let (start, end) = (from.max(at), to.min(at + batch.num_rows()));
        if start < end {
            rows.push(batch.slice(start - at, end - start));
        }
        at += batch.num_rows();
    }
    rows
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(values: std::ops::Range<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(values))]).unwrap()
    }

    #[test]
    fn runs_in_order_cover_every_row_once() {
        let batches = [batch(0..5), batch(5..6), batch(6..17)];
        for parts in 1..20 {
            let runs = split_rows(&batches, parts);
            assert_eq!(runs.len(), parts);
            let values: Vec<i64> = runs
                .iter()
                .flatten()
                .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
                .collect();
            assert_eq!(values, (0..17).collect::<Vec<_>>(), "{parts} parts");
            let sizes: Vec<usize> = runs.iter().map(|r| r.iter().map(RecordBatch::num_rows).sum()).collect();
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{parts}: {sizes:?}");
        }
    }
}
