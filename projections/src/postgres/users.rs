//! `users`: one row per registered user, the first registration kept.

use tokio_postgres::Transaction;

use crate::error::ProjectionError;
use crate::fold::users::UserBatch;

pub(super) async fn apply(tx: &Transaction<'_>, users: &UserBatch) -> Result<(), ProjectionError> {
    let mut ids = vec![];
    let mut names = vec![];
    let mut roles = vec![];
    let mut at = vec![];
    for row in users.rows() {
        ids.push(row.user_id.as_str());
        names.push(row.display_name.as_str());
        roles.push(row.role);
        at.push(row.registered_at_ms);
    }
    tx.execute(
        "INSERT INTO users (user_id, display_name, role, registered_at_ms)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
         ON CONFLICT (user_id) DO NOTHING",
        &[&ids, &names, &roles, &at],
    )
    .await
    .map_err(ProjectionError::pg("insert users"))?;
    Ok(())
}
