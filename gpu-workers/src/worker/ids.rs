//! The ids of the worker's events, derived from the request id (UUID v5), so a job re-run
//! after a crash emits the same ids and readers can drop the repeats of non-terminal events.

use uuid::Uuid;

/// The namespace of the worker's event ids (a fixed random UUID).
const NAMESPACE: Uuid = Uuid::from_u128(0x0c68_9e7d_98d4_4148_a813_cd23_dabf_b11d);

fn derive(request: Uuid, what: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("{request}/{what}").as_bytes())
}

/// `GenerationStarted` of `request`.
pub fn started(request: Uuid) -> Uuid {
    derive(request, "started")
}

/// `GenerationProgressed` of `request` at `step`.
pub fn progressed(request: Uuid, step: u32) -> Uuid {
    derive(request, &format!("progressed/{step}"))
}

/// The terminal event of `request`, whichever it is: one id for all three kinds, so even
/// two different terminals of one request could never count as two.
pub fn terminal(request: Uuid) -> Uuid {
    derive(request, "terminal")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct_per_request_and_kind() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        assert_eq!(started(a), started(a));
        assert_eq!(terminal(a), terminal(a));
        let all = [
            started(a),
            terminal(a),
            progressed(a, 1),
            progressed(a, 2),
            started(b),
            terminal(b),
            progressed(b, 1),
        ];
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), all.len());
        assert_eq!(started(a).get_version_num(), 5);
    }
}
