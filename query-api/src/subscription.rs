//! Live updates over WebSocket (`graphql-transport-ws`): each subscription sends the current
//! value, then a new one whenever the projection commits a change to what it watches.

use async_graphql::{Context, ErrorExtensions, ID, Subscription};
use futures::Stream;
use gallery_commands::{AuthError, Principal};
use gallery_schemas::{ArtworkId, Role};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::changes::{Change, ChangeFeed};
use crate::error::QueryError;
use crate::live::LiveStats;
use crate::query::{ArtworkStats, GenerationJob};
use crate::read::{JobRow, ReadModel, Stats};
use crate::schema::Caller;

#[derive(Debug, Default)]
pub struct SubscriptionRoot;

fn feed<'c>(ctx: &Context<'c>) -> async_graphql::Result<&'c ChangeFeed> {
    ctx.data::<ChangeFeed>().map_err(|e| {
        tracing::error!(error = ?e, "the schema was built without the change feed");
        async_graphql::Error::new("internal error").extend_with(|_, x| x.set("code", "INTERNAL"))
    })
}

fn live<'c>(ctx: &Context<'c>) -> async_graphql::Result<&'c LiveStats> {
    ctx.data::<LiveStats>().map_err(|e| {
        tracing::error!(error = ?e, "the schema was built without the live counts");
        async_graphql::Error::new("internal error").extend_with(|_, x| x.set("code", "INTERNAL"))
    })
}

fn read_model<'c>(ctx: &Context<'c>) -> async_graphql::Result<&'c ReadModel> {
    ctx.data::<ReadModel>().map_err(|e| {
        tracing::error!(error = ?e, "the schema was built without the read model");
        async_graphql::Error::new("internal error").extend_with(|_, x| x.set("code", "INTERNAL"))
    })
}

/// Waits for the next change `wanted` accepts; `false` once the feed is gone. A subscriber
/// that fell behind re-reads (it may have missed its change).
async fn next_change(
    changes: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<Change>>,
    wanted: impl Fn(&Change) -> bool,
) -> bool {
    loop {
        match changes.recv().await {
            Ok(change) if wanted(&change) => return true,
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return true,
            Err(RecvError::Closed) => return false,
        }
    }
}

/// Whether `who` may follow `job`.
fn allowed(who: &Principal, job: &JobRow) -> bool {
    job.user_id == who.user.as_str() || who.role == Role::Admin
}

#[Subscription]
impl SubscriptionRoot {
    /// An artwork's counts: now, then each time the projection commits a change to them.
    async fn artwork_stats(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<ArtworkStats>> + use<>>
    {
        let id = ArtworkId::parse(&id).map_err(|e| QueryError::from(e).extend())?;
        // Shared with every subscriber of the artwork in this process: the counts are read
        // once per change, and only a change of this artwork wakes this subscription.
        let following = live(ctx)?.follow(id.as_str());
        Ok(futures::stream::unfold(
            (following, None::<Stats>),
            |(mut following, last)| async move {
                let stats = following.next(last).await?;
                Some((Ok(stats.into()), (following, Some(stats))))
            },
        ))
    }

    /// A generation job: now (once the read model has it), then each time the projection
    /// commits a change to it (status, progress, result, failure). Once the AI painter ended it
    /// (`finishedAt` is set), nothing changes any more and the subscription completes. Only its
    /// requester (or an admin) may follow it: the bearer token goes in the `connection_init`
    /// payload, `{"authorization": "Bearer <token>"}`.
    async fn generation(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<GenerationJob>> + use<>>
    {
        let who = ctx
            .data_opt::<Caller>()
            .and_then(|c| c.0.clone())
            .ok_or_else(|| QueryError::from(AuthError::Missing).extend())?;
        let id = Uuid::parse_str(&id).map_err(|_| {
            QueryError::InvalidArgument {
                argument: "generation id",
                reason: "must be a UUID",
            }
            .extend()
        })?;
        let read = read_model(ctx)?.clone();
        let changes = feed(ctx)?.subscribe();
        let state = JobFollower {
            changes,
            read,
            who,
            last: None,
            first: true,
            done: false,
        };
        Ok(futures::stream::unfold(state, move |mut f| async move {
            let next = f.next(id).await?;
            Some((next, f))
        }))
    }
}

/// The state of a `generation` subscription.
struct JobFollower {
    changes: tokio::sync::broadcast::Receiver<std::sync::Arc<Change>>,
    read: ReadModel,
    who: Principal,
    /// The job as last sent.
    last: Option<JobRow>,
    first: bool,
    /// Nothing more to send: the job is final, or the caller may not follow it.
    done: bool,
}

impl JobFollower {
    /// The next update of job `id`, or `None` when the subscription ends.
    async fn next(&mut self, id: Uuid) -> Option<async_graphql::Result<GenerationJob>> {
        if self.done {
            return None;
        }
        loop {
            if !self.first && !next_change(&mut self.changes, |c| c.touches_job(id)).await {
                return None;
            }
            self.first = false;
            let job = match self.read.job(id).await {
                Ok(Some(job)) => job,
                Ok(None) => continue,
                Err(e) => return Some(Err(e.extend())),
            };
            if !allowed(&self.who, &job) {
                self.done = true;
                let refused = async_graphql::Error::new("not your generation")
                    .extend_with(|_, x| x.set("code", "FORBIDDEN"));
                return Some(Err(refused));
            }
            if self.last.as_ref() == Some(&job) {
                continue;
            }
            self.done = job.finished_at_ms.is_some();
            self.last = Some(job.clone());
            return Some(Ok(GenerationJob::from(job)));
        }
    }
}
