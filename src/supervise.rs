//! Watching the roles of one process. Every role (a server, a projector, the painter, their
//! helpers) runs as a task meant to run until the process is asked to stop: the roles restart
//! their own sessions after errors and never end on their own. So a role task that ends
//! anyway, by returning, failing or panicking, is a failure of the process: it must not go on
//! serving half of what it promised with `/healthz` answering `ok`. [`Supervisor::failed`]
//! reports the first such end with the role's name and cause; the binary then stops the other
//! roles and exits non-zero, so that its supervisor (systemd, compose, Kubernetes) restarts it.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinError, JoinSet};

/// The cause a role gives for failing.
pub type RoleError = Box<dyn std::error::Error + Send + Sync>;

/// A role that ended while the process was not stopping.
#[derive(Debug, thiserror::Error)]
pub enum RoleFailure {
    /// It returned as if asked to stop.
    #[error("the {role} stopped on its own")]
    Ended { role: &'static str },
    /// It returned an error.
    #[error("the {role} failed")]
    Failed {
        role: &'static str,
        #[source]
        source: RoleError,
    },
    /// It panicked (a bug).
    #[error("the {role} panicked: {message}")]
    Panicked { role: &'static str, message: String },
    /// Its task was cancelled from outside.
    #[error("the {role} was cancelled")]
    Cancelled { role: &'static str },
}

impl RoleFailure {
    /// The role that failed.
    pub fn role(&self) -> &'static str {
        match self {
            RoleFailure::Ended { role }
            | RoleFailure::Failed { role, .. }
            | RoleFailure::Panicked { role, .. }
            | RoleFailure::Cancelled { role } => role,
        }
    }
}

/// The role tasks of a process, by name.
#[derive(Debug, Default)]
pub struct Supervisor {
    tasks: JoinSet<Result<(), RoleError>>,
    roles: HashMap<Id, &'static str>,
}

impl Supervisor {
    /// Runs `task` as the role named `role` (a noun: "command service", "painter").
    pub fn spawn<F>(&mut self, role: &'static str, task: F)
    where
        F: Future<Output = Result<(), RoleError>> + Send + 'static,
    {
        let handle = self.tasks.spawn(task);
        self.roles.insert(handle.id(), role);
    }

    /// Runs `task`, which cannot fail but by ending or panicking, as the role named `role`.
    pub fn spawn_infallible<F>(&mut self, role: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn(role, async move {
            task.await;
            Ok(())
        });
    }

    /// How many roles run.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// True when no role runs.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Waits until a role ends, and tells which and why; never resolves while every role
    /// runs (or when none does). Cancel-safe: dropping the future loses no report.
    pub async fn failed(&mut self) -> RoleFailure {
        match self.tasks.join_next_with_id().await {
            Some(ended) => self.failure(ended),
            None => std::future::pending().await,
        }
    }

    /// Waits for every role to end (after they were asked to stop); the roles that failed
    /// meanwhile rather than stopping are logged.
    pub async fn join_all(&mut self) {
        while let Some(ended) = self.tasks.join_next_with_id().await {
            match self.failure(ended) {
                RoleFailure::Ended { .. } => {}
                failure => log(&failure, "while the roles were stopping"),
            }
        }
    }

    fn failure(&mut self, ended: Result<(Id, Result<(), RoleError>), JoinError>) -> RoleFailure {
        let mut role_of = |id| self.roles.remove(&id).unwrap_or("unnamed role");
        match ended {
            Ok((id, Ok(()))) => RoleFailure::Ended { role: role_of(id) },
            Ok((id, Err(source))) => RoleFailure::Failed {
                role: role_of(id),
                source,
            },
            Err(e) => {
                let role = role_of(e.id());
                if e.is_panic() {
                    let payload = e.into_panic();
                    let message = payload
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic without a message".to_owned());
                    RoleFailure::Panicked { role, message }
                } else {
                    RoleFailure::Cancelled { role }
                }
            }
        }
    }
}

/// Logs a role's failure with its chain of causes, and `context` (what happens now).
pub fn log(failure: &RoleFailure, context: &str) {
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(failure);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    tracing::error!(
        role = failure.role(),
        cause = %causes.join(": "),
        "{failure}; {context}"
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]

    use std::time::Duration;

    use super::*;

    fn forever() -> impl Future<Output = ()> + Send + 'static {
        std::future::pending()
    }

    #[tokio::test]
    async fn a_role_that_returns_is_reported_by_name() {
        let mut roles = Supervisor::default();
        roles.spawn_infallible("projector", forever());
        roles.spawn_infallible("painter", async {});
        let failure = roles.failed().await;
        assert!(
            matches!(failure, RoleFailure::Ended { role: "painter" }),
            "{failure:?}"
        );
        assert_eq!(failure.to_string(), "the painter stopped on its own");
        assert_eq!(roles.len(), 1);
    }

    #[tokio::test]
    async fn a_role_that_fails_is_reported_with_its_cause() {
        let mut roles = Supervisor::default();
        roles.spawn_infallible("projector", forever());
        roles.spawn("command service", async {
            Err(std::io::Error::other("listener closed").into())
        });
        let failure = roles.failed().await;
        assert_eq!(failure.role(), "command service");
        let cause = std::error::Error::source(&failure).map(ToString::to_string);
        assert_eq!(cause.as_deref(), Some("listener closed"));
    }

    #[tokio::test]
    async fn a_role_that_panics_is_reported_with_the_message() {
        let mut roles = Supervisor::default();
        roles.spawn_infallible("projector", forever());
        roles.spawn_infallible("GraphQL API", async {
            let n = std::hint::black_box(3_u32);
            panic!("index {n} out of range");
        });
        let failure = roles.failed().await;
        assert!(
            matches!(&failure, RoleFailure::Panicked { role: "GraphQL API", message } if message == "index 3 out of range"),
            "{failure:?}"
        );
    }

    #[tokio::test]
    async fn roles_that_keep_running_are_no_failure() {
        let mut roles = Supervisor::default();
        roles.spawn_infallible("projector", forever());
        roles.spawn_infallible("painter", forever());
        let waited = tokio::time::timeout(Duration::from_millis(300), roles.failed()).await;
        assert!(waited.is_err(), "a running role was reported as failed");
        // Nothing was lost by giving up the wait.
        assert_eq!(roles.len(), 2);
        let mut none = Supervisor::default();
        let waited = tokio::time::timeout(Duration::from_millis(300), none.failed()).await;
        assert!(waited.is_err(), "no roles, no failure");
    }
}
