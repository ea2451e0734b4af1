//! Cancels read ahead of a paused session. Holding the most requests allowed, the worker stops
//! reading its partitions, so a cancel behind the pause point would wait until it resumes,
//! and the request it cancels, held already, would be painted meanwhile. While paused, the
//! session looks ahead now and then: a separate scanner reads each owned partition from the
//! session's next offset (committed messages only, a bounded stretch) and reports the cancels
//! of requests the worker holds, which the session honours at once. The offsets still move
//! only as the session reads; when it reads such a cancel itself later, the request is
//! finished and the cancel changes nothing.

use std::collections::HashSet;
use std::time::Duration;

use gallery_schemas::Event;
use uuid::Uuid;

use super::scanner::Scanner;

/// Messages read ahead per partition per look.
pub const LIMIT: i64 = 10_000;
/// Longest one partition's look may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The requests among `held` cancelled in the stretch after each `(partition, next offset)`,
/// in the order read (blocking). A partition that cannot be read is skipped (logged).
pub fn cancels(scanner: &Scanner, from: &[(i32, i64)], held: &HashSet<Uuid>) -> Vec<Uuid> {
    let mut found = Vec::new();
    for &(partition, next) in from {
        let stable = match scanner.watermarks(partition) {
            Ok((_, stable)) => stable,
            Err(error) => {
                tracing::debug!(partition, %error, "lookahead: no watermarks");
                continue;
            }
        };
        let end = stable.min(next.saturating_add(LIMIT));
        let scanned = scanner.scan(partition, next, end, TIMEOUT, |_, event| {
            if let Event::GenerationCancelled(cancel) = event
                && held.contains(&cancel.request_id)
            {
                found.push(cancel.request_id);
            }
        });
        if let Err(error) = scanned {
            tracing::debug!(partition, %error, "lookahead: stopped early");
        }
    }
    found
}
