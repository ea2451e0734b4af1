//! Users, keyed by user id: the first registration of an id is kept.

use std::collections::BTreeMap;

use gallery_schemas::{Role, UserRegistered};

/// A row of `users`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub user_id: String,
    pub display_name: String,
    /// The role at registration (`visitor`, `curator`, `admin`).
    pub role: &'static str,
    pub registered_at_ms: i64,
}

/// The lower-case name of a role, as stored.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Visitor => "visitor",
        Role::Curator => "curator",
        Role::Admin => "admin",
    }
}

/// Registrations of one batch; the first per user wins (the store keeps an existing row).
#[derive(Debug, Default)]
pub struct UserBatch {
    rows: BTreeMap<String, UserRow>,
}

impl UserBatch {
    pub fn add(&mut self, e: &UserRegistered) {
        self.rows
            .entry(e.user_id.as_str().to_owned())
            .or_insert_with(|| UserRow {
                user_id: e.user_id.as_str().to_owned(),
                display_name: e.display_name.as_str().to_owned(),
                role: role_name(e.role),
                registered_at_ms: e.occurred_at,
            });
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Rows to insert unless the user is stored already.
    pub fn rows(&self) -> impl Iterator<Item = &UserRow> {
        self.rows.values()
    }
}
