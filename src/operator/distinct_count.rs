//! `count(DISTINCT x)` kept value by value: each value a group has seen is one store entry, and
//! the group's aggregate state is the number of them, so a batch works on the values it brings,
//! not on the values the group holds.
//!
//! DataFusion's own state for `count(DISTINCT x)` is the list of a group's distinct values;
//! merging it batch by batch decoded, merged and re-encoded a group's whole list every batch
//! that touched the group, a cost that grew with the state (Nexmark q16). Flink keeps such a
//! set in a `MapState` per key for the same reason. Spark refuses distinct aggregations on a
//! stream ("Distinct aggregations are not supported on streaming DataFrames/Datasets"); sluice
//! runs them.
//!
//! The aggregation merges a plain `count` in place of each such aggregate: its partial list
//! column becomes the number of values of each partial row its group had not seen
//! ([`DistinctCounts::count_new`]), which `count`'s accumulator adds up. A session window keeps
//! DataFusion's lists instead: merging two sessions must union their sets, which counts cannot.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::aggregate::{AggregateExprBuilder, AggregateFunctionExpr};

use crate::state::StateStore;
use crate::Result;

/// The state layout of an aggregation with a `count(DISTINCT x)` kept value by value, recorded
/// with the operator in the checkpoint (see `crate::plan::fingerprint`), so that a checkpoint
/// holding DataFusion's value lists is refused at start rather than misread.
pub(crate) const DISTINCT_COUNT_STATE_FORMAT: &str = "count(DISTINCT) state: an entry per group and distinct value";

/// The first byte of a seen value's store key. A group key is an arrow row of ascending fields,
/// whose first byte is a null, empty or valid sentinel (0, 1 or 2), or no byte at all (a global
/// aggregation): never this one.
const SEEN: u8 = 0xFF;

/// Bytes before the group key in a seen value's key: the tag, the aggregate's slot (u16 BE) and
/// the group key's length (u32 BE).
const HEADER: usize = 7;

/// Whether `aggregate` can be kept value by value: a `count(DISTINCT x)` of one argument (the
/// aggregation keeps DataFusion's lists in a session window). `crate::plan::fingerprint` states
/// the same rule over the logical plan, to record the layout in the checkpoint.
pub(crate) fn is_kept_by_value(aggregate: &AggregateFunctionExpr) -> bool {
    aggregate.fun().name() == "count" && aggregate.is_distinct() && aggregate.expressions().len() == 1
}

/// The plain `count(x)` an aggregation merges in place of `count(DISTINCT x)` (`aggregate`),
/// over the same input (`input_schema`) and under the same name.
///
/// # Errors
/// A DataFusion error building the expression.
pub(crate) fn plain_count(
    aggregate: &AggregateFunctionExpr,
    input_schema: SchemaRef,
) -> Result<Arc<AggregateFunctionExpr>> {
    let count = AggregateExprBuilder::new(Arc::new(aggregate.fun().clone()), aggregate.expressions())
        .schema(input_schema)
        .alias(aggregate.name())
        .build()?;
    Ok(Arc::new(count))
}

/// The `count(DISTINCT x)` aggregates of one aggregation that are kept value by value.
#[derive(Debug)]
pub(crate) struct DistinctCounts {
    /// Each one's state column (among the state columns, all aggregates' in order) and the row
    /// converter of its values.
    slots: Vec<(usize, RowConverter)>,
}

impl DistinctCounts {
    /// The aggregates at state columns `columns`, whose partial states are lists of values of
    /// `value_types`.
    ///
    /// # Errors
    /// A DataFusion error when a value type has no row encoding.
    pub(crate) fn try_new(columns: impl IntoIterator<Item = (usize, DataType)>) -> Result<Self> {
        let slots = columns
            .into_iter()
            .map(|(column, value_type)| Ok((column, RowConverter::new(vec![SortField::new(value_type)])?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { slots })
    }

    /// True when the aggregation has none.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether state column `column` is one of them (stored as its count, an `Int64`).
    pub(crate) fn holds(&self, column: usize) -> bool {
        self.slots.iter().any(|(c, _)| *c == column)
    }

    /// The partial state columns `states` with each list of values replaced by the number of
    /// them the row's group (`keys[row]`) had not seen, entering the unseen ones in `store`.
    /// `on_new(row, key)` is told of each entry added, by the partial row it came from.
    ///
    /// # Errors
    /// A store error; a DataFusion error when a column is not the list `count(DISTINCT)`'s
    /// partial state is, or its values have no row encoding.
    pub(crate) fn count_new(
        &self,
        store: &mut StateStore,
        keys: &[Box<[u8]>],
        states: &[ArrayRef],
        mut on_new: impl FnMut(usize, &[u8]) -> Result<()>,
    ) -> Result<Vec<ArrayRef>> {
        let mut out = states.to_vec();
        let mut key = Vec::new();
        for (slot, (column, converter)) in self.slots.iter().enumerate() {
            let lists = states[*column].as_list_opt::<i32>().ok_or_else(|| {
                datafusion::error::DataFusionError::Internal(format!(
                    "count(DISTINCT)'s partial state is a list, not {}",
                    states[*column].data_type()
                ))
            })?;
            let values = lists.values();
            let rows = converter.convert_columns(&[Arc::clone(values)])?;
            let offsets = lists.value_offsets();
            let mut counts = Vec::with_capacity(lists.len());
            for (row, group) in keys.iter().enumerate() {
                // A NULL list brings no value.
                let brought = if lists.is_valid(row) { offsets[row] as usize..offsets[row + 1] as usize } else { 0..0 };
                let mut new = 0i64;
                for at in brought.filter(|at| values.is_valid(*at)) {
                    seen_key(&mut key, slot, group, rows.row(at).as_ref())?;
                    if store.insert_absent(&key)? {
                        new += 1;
                        on_new(row, &key)?;
                    }
                }
                counts.push(new);
            }
            out[*column] = Arc::new(Int64Array::from(counts));
        }
        Ok(out)
    }
}

/// Writes into `key` the store key of `value` (row bytes) seen by group `group` for the
/// aggregate in `slot`: `[SEEN][slot][group length][group][value]`.
///
/// # Errors
/// A DataFusion error past 65,536 distinct counts in one aggregation or a 4 GiB group key.
fn seen_key(key: &mut Vec<u8>, slot: usize, group: &[u8], value: &[u8]) -> Result<()> {
    let too_large =
        |what: &str| datafusion::error::DataFusionError::NotImplemented(format!("count(DISTINCT) with {what}"));
    let slot = u16::try_from(slot).map_err(|_| too_large("more than 65,536 of them in one aggregation"))?;
    let len = u32::try_from(group.len()).map_err(|_| too_large("a group key over 4 GiB"))?;
    key.clear();
    key.push(SEEN);
    key.extend_from_slice(&slot.to_be_bytes());
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(group);
    key.extend_from_slice(value);
    Ok(())
}

/// The group key a stored key belongs to when it is a seen value's (see [`seen_key`]); `None`
/// for a group's own key.
pub(crate) fn group_of_seen(key: &[u8]) -> Option<&[u8]> {
    if key.first() != Some(&SEEN) || key.len() < HEADER {
        return None;
    }
    let len = u32::from_be_bytes(key[3..HEADER].try_into().ok()?) as usize;
    key.get(HEADER..HEADER + len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::CheckpointLocation;
    use arrow::array::{Int64Builder, ListBuilder};

    fn lists(rows: &[Option<&[Option<i64>]>]) -> ArrayRef {
        let mut b = ListBuilder::new(Int64Builder::new());
        for row in rows {
            match row {
                Some(values) => {
                    b.values().extend(values.iter().copied());
                    b.append(true);
                }
                None => b.append(false),
            }
        }
        Arc::new(b.finish())
    }

    fn counts(column: &ArrayRef) -> Vec<i64> {
        column.as_primitive::<arrow::datatypes::Int64Type>().values().to_vec()
    }

    #[test]
    fn a_batch_counts_and_reads_only_the_values_its_groups_had_not_seen() {
        let location = CheckpointLocation::open("memory://").unwrap();
        let mut store = StateStore::new(location, "0", 0);
        let distinct = DistinctCounts::try_new([(1, DataType::Int64)]).unwrap();
        let keys: Vec<Box<[u8]>> = vec![Box::from(&b"\x01a"[..]), Box::from(&b"\x01b"[..])];
        let other = lists(&[Some(&[]), Some(&[])]);
        // Group a holds 1000 values.
        let held: Vec<Option<i64>> = (0..1000).map(Some).collect();
        let first = lists(&[Some(&held), Some(&[Some(1), None])]);
        let mut added = Vec::new();
        let out = distinct
            .count_new(&mut store, &keys, &[Arc::clone(&other), first], |row, key| {
                added.push((row, group_of_seen(key).unwrap().to_vec()));
                Ok(())
            })
            .unwrap();
        assert!(Arc::ptr_eq(&out[0], &other), "other aggregates' columns pass through");
        assert_eq!(counts(&out[1]), vec![1000, 1], "a NULL value is not counted");
        assert_eq!(added.len(), 1001);
        assert_eq!(added[1000], (1, b"\x01b".to_vec()));
        assert_eq!(store.len(), 1001);

        store.clear_counts();
        // Three values for a (one seen, two new), one seen value for b, and a NULL list.
        let keys = [keys[0].clone(), keys[1].clone(), keys[0].clone()];
        let second = lists(&[Some(&[Some(5), Some(1000), Some(1001)]), Some(&[Some(1)]), None]);
        let out = distinct.count_new(&mut store, &keys, &[Arc::clone(&other), second], |_, _| Ok(())).unwrap();
        assert_eq!(counts(&out[1]), vec![2, 0, 0]);
        assert_eq!(store.metrics().rows_scanned, 4, "one read per arriving value, none for the 1000 held");
        assert_eq!(store.len(), 1003);
    }

    #[test]
    fn a_group_key_is_never_taken_for_a_seen_value() {
        let mut key = Vec::new();
        seen_key(&mut key, 3, b"\x02group", b"\x01\x80").unwrap();
        assert_eq!(group_of_seen(&key), Some(&b"\x02group"[..]));
        seen_key(&mut key, 0, b"", b"\x01").unwrap();
        assert_eq!(group_of_seen(&key), Some(&b""[..]));
        for group in [&b""[..], b"\x00", b"\x01\x80", b"\x02ab"] {
            assert_eq!(group_of_seen(group), None);
        }
        // A truncated key (a damaged checkpoint) is not a seen value's.
        assert_eq!(group_of_seen(b"\xff\x00\x00\x00\x00\x00\x09ab"), None);
    }
}
