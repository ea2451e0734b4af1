//! The statuses the write side and the read model store as text, spelled once: an exhibition's
//! (draft, published, closed) and a generation job's. Every reader parses a stored status with
//! [`str::parse`]; a status it does not know is an error naming it, never a default.

use std::fmt;
use std::str::FromStr;

/// A stored status no variant spells.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} status {value:?}")]
pub struct UnknownStatus {
    /// What the status is of (`exhibition`, `generation job`).
    pub kind: &'static str,
    pub value: String,
}

/// A status enum with its stored spellings, `as_str`, `Display` and `FromStr`.
macro_rules! stored_status {
    ($(#[$doc:meta])* $name:ident, $kind:literal { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every status, in the order a life goes through them.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stored spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;

            fn from_str(raw: &str) -> Result<Self, UnknownStatus> {
                match raw {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownStatus { kind: $kind, value: raw.to_owned() }),
                }
            }
        }
    };
}

stored_status! {
    /// Where an exhibition is in its life: it only moves forward (draft, published, closed).
    ExhibitionStatus, "exhibition" {
        Draft => "draft",
        Published => "published",
        Closed => "closed",
    }
}

stored_status! {
    /// Where a generation job is (the read model's table in `projections::fold::generation`).
    JobStatus, "generation job" {
        Requested => "requested",
        Running => "running",
        /// A cancel was asked for and the painter has not confirmed it yet.
        Cancelling => "cancelling",
        Completed => "completed",
        Failed => "failed",
        Cancelled => "cancelled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_parses_back_from_its_spelling() {
        for s in ExhibitionStatus::ALL {
            assert_eq!(s.as_str().parse::<ExhibitionStatus>(), Ok(*s));
            assert_eq!(s.to_string(), s.as_str());
        }
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>(), Ok(*s));
        }
        assert_eq!(JobStatus::ALL.len(), 6);
        assert_eq!(JobStatus::Cancelling.as_str(), "cancelling");
        assert_eq!(ExhibitionStatus::Published.as_str(), "published");
    }

    #[test]
    fn an_unknown_status_is_an_error_naming_it() {
        let e = "paused".parse::<JobStatus>().unwrap_err();
        assert_eq!(e.value, "paused");
        assert_eq!(e.to_string(), "unknown generation job status \"paused\"");
        assert!("Draft".parse::<ExhibitionStatus>().is_err());
        assert!("".parse::<ExhibitionStatus>().is_err());
    }

    #[test]
    fn an_exhibition_moves_forward_in_declaration_order() {
        assert!(ExhibitionStatus::Draft < ExhibitionStatus::Published);
        assert!(ExhibitionStatus::Published < ExhibitionStatus::Closed);
    }
}
