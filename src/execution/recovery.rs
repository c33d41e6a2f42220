//! Where a query resumes from its checkpoint (DESIGN §1, "Recovery").

use std::collections::BTreeMap;

use serde_json::Value;

use crate::checkpoint::log::STATE_LAYOUT;
use crate::checkpoint::{BatchLog, CheckpointLocation, CommitEntry, OffsetEntry, QueryMetadata};
use crate::state::store::MAX_STATE_PARTITIONS;
use crate::{Result, SluiceError};

/// The position a query starts from.
#[derive(Debug, Clone, Default)]
pub struct ResumePoint {
    /// The next batch id to plan (after the replay, if any).
    pub next_batch_id: u64,
    /// A batch whose offsets were logged but never committed: it runs again, exactly as logged.
    pub replay: Option<OffsetEntry>,
    /// The state version to load before running (`None`: empty state).
    pub state_version: Option<u64>,
    /// The last batch whose offsets were logged, through which sources restore their own logs.
    pub sources_through: Option<u64>,
    /// Per source, where the next planned batch starts.
    pub source_starts: BTreeMap<String, Value>,
    /// Per watermarked source, `max - delay` before the next planned batch, ms.
    pub input_watermarks_ms: BTreeMap<String, i64>,
    /// The watermark of the last committed batch (`W_{k-1}` of the next planned batch), ms.
    pub last_watermark_ms: i64,
}

/// Reads the offset and commit logs: if `commits/N` exists for the latest `offsets/N`, the query
/// continues with `N+1` from state version `N`; otherwise batch `N` runs again from state `N-1`.
///
/// # Errors
/// [`SluiceError::Checkpoint`] when the logs are unreadable or inconsistent.
pub async fn resume_point(offsets: &BatchLog, commits: &BatchLog) -> Result<ResumePoint> {
    let Some(latest) = offsets.latest().await? else {
        return Ok(ResumePoint::default());
    };
    let entry: OffsetEntry = offsets.read_listed(latest).await?;
    let sources_through = Some(latest);
    match commits.read::<CommitEntry>(latest).await? {
        Some(commit) => Ok(ResumePoint {
            next_batch_id: latest + 1,
            replay: None,
            state_version: Some(latest),
            sources_through,
            source_starts: entry.sources.iter().map(|(k, r)| (k.clone(), r.end.clone())).collect(),
            input_watermarks_ms: commit.input_watermarks_ms,
            last_watermark_ms: entry.watermark_ms,
        }),
        None => Ok(ResumePoint {
            next_batch_id: latest + 1,
            state_version: latest.checked_sub(1),
            sources_through,
            source_starts: entry.sources.iter().map(|(k, r)| (k.clone(), r.end.clone())).collect(),
            input_watermarks_ms: entry.input_watermarks_ms.clone(),
            last_watermark_ms: entry.watermark_ms,
            replay: Some(entry),
        }),
    }
}

/// Refuses a checkpoint whose state partitions were filled by another assignment of rows to
/// partitions than this version's: each key would be looked up in a partition that does not hold
/// it. With one partition every layout is the same.
///
/// # Errors
/// [`SluiceError::Checkpoint`] naming the layouts and the remedy.
pub fn check_state_layout(location: &CheckpointLocation, metadata: &QueryMetadata, has_state: bool) -> Result<()> {
    if !has_state || metadata.state_partitions == 1 || metadata.state_layout == STATE_LAYOUT {
        return Ok(());
    }
    Err(location.error(
        "metadata",
        format!(
            "the checkpoint's {} state partitions use state layout {} (written by sluice {}), this version reads layout \
             {STATE_LAYOUT}; run the query with the version that wrote it, or start it with a new checkpoint location",
            metadata.state_partitions, metadata.state_layout, metadata.sluice_version
        ),
    ))
}

/// Reads `metadata`, or writes it on a query's first run; gives a `metadata` written without a
/// query id one (and writes it back, so it stays the same from then on).
///
/// # Errors
/// [`SluiceError::Checkpoint`] when the file is corrupted (also: a number of state partitions
/// outside 1 to [`MAX_STATE_PARTITIONS`]) or the checkpoint belongs to a query with other fixed
/// settings.
pub async fn load_or_create_metadata(location: &CheckpointLocation, state_partitions: usize) -> Result<QueryMetadata> {
    if let Some(bytes) = location.get("metadata").await? {
        let corrupted = |why: String| {
            location.error(
                "metadata",
                format!("corrupted query metadata ({why}); restore it or use a new checkpoint location"),
            )
        };
        let mut metadata: QueryMetadata = serde_json::from_slice(&bytes).map_err(|e| corrupted(e.to_string()))?;
        if !(1..=MAX_STATE_PARTITIONS).contains(&metadata.state_partitions) {
            return Err(corrupted(format!(
                "state_partitions is {}, not from 1 to {MAX_STATE_PARTITIONS}",
                metadata.state_partitions
            )));
        }
        if metadata.id.is_empty() {
            metadata.id = uuid::Uuid::new_v4().to_string();
            write_metadata(location, &metadata).await?;
        }
        return Ok(metadata);
    }
    let metadata = QueryMetadata {
        id: uuid::Uuid::new_v4().to_string(),
        state_partitions,
        sluice_version: env!("CARGO_PKG_VERSION").to_string(),
        state_layout: STATE_LAYOUT,
    };
    write_metadata(location, &metadata).await?;
    Ok(metadata)
}

async fn write_metadata(location: &CheckpointLocation, metadata: &QueryMetadata) -> Result<()> {
    location.put("metadata", serde_json::to_vec_pretty(metadata).expect("metadata serializes").into()).await
}

/// Error for a checkpoint whose sources differ from the query's.
pub fn source_mismatch(location: &CheckpointLocation, name: &str) -> SluiceError {
    location.error(
        "offsets",
        format!("the checkpoint has no offsets for source '{name}': it was written by a different query; use a new checkpoint location"),
    )
}

/// The checkpoint file listing the stateful operators whose state it holds.
const STATEFUL_OPERATORS: &str = "state/operators.json";

/// Records `operators` (see [`crate::plan::fingerprint`]) in a new checkpoint, or checks that a
/// checkpoint's state was written by operators with the same definitions.
///
/// # Errors
/// [`SluiceError::Checkpoint`] naming the first operator that changed, with its old and new
/// definition, when the query no longer matches its checkpoint (its state would be decoded with
/// another layout or merged into results of another definition); also when the file is corrupted.
pub async fn check_stateful_operators(location: &CheckpointLocation, operators: &[String]) -> Result<()> {
    let Some(bytes) = location.get(STATEFUL_OPERATORS).await? else {
        let json = serde_json::to_vec_pretty(operators).expect("strings serialize");
        return location.put(STATEFUL_OPERATORS, json.into()).await;
    };
    let stored: Vec<String> = serde_json::from_slice(&bytes).map_err(|e| {
        location.error(
            STATEFUL_OPERATORS,
            format!("corrupted list of stateful operators ({e}); restore it or use a new checkpoint location"),
        )
    })?;
    let changed = |what: String| {
        location.error(
            STATEFUL_OPERATORS,
            format!(
                "the query's stateful operators changed since this checkpoint was written: {what}. Its state cannot be \
                 read by the changed query; run the original query on it, or start the changed query with a new checkpoint location"
            ),
        )
    };
    for (i, (old, new)) in stored.iter().zip(operators).enumerate() {
        if old != new {
            return Err(changed(format!("operator {i} was `{old}` and is now `{new}`")));
        }
    }
    if stored.len() != operators.len() {
        let list = |ops: &[String]| if ops.is_empty() { "none".to_string() } else { ops.join("`, `") };
        return Err(changed(format!(
            "the checkpoint has {} stateful operator(s) (`{}`), the query has {} (`{}`)",
            stored.len(),
            list(&stored),
            operators.len(),
            list(operators)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn metadata_without_a_query_id_loads_and_gets_one_that_stays() {
        let location = CheckpointLocation::open("memory://").unwrap();
        location.put("metadata", r#"{"state_partitions": 4, "sluice_version": "0.1.0"}"#.into()).await.unwrap();
        let first = load_or_create_metadata(&location, 2).await.unwrap();
        assert_eq!(first.state_partitions, 4, "the checkpoint's setting wins");
        assert_eq!(first.id.len(), 36, "a UUID: {}", first.id);
        assert_eq!(load_or_create_metadata(&location, 2).await.unwrap().id, first.id, "written back");
    }
}
