//! The micro-batch loop (DESIGN §1): plan a batch's offsets, read, run the incremental plan,
//! write the sink, commit; triggers decide when; progress says how it went.

pub mod progress;
pub mod query;
pub mod recovery;
pub mod trigger;

pub use progress::BatchProgress;
pub use query::{StopHandle, StreamingQuery};
pub use trigger::Trigger;
