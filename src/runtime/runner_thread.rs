//! A background runner on an actix arbiter thread of its own.
//!
//! The process managers and the outbound publishers each follow the log in a loop that must
//! not be delayed by another (eligibility following thousands of registrations a second must
//! not hold up charges or NATS), and whose futures need not be `Send` (actor requests, local
//! tasks). So each loop gets its own arbiter, and shutdown waits for it with a deadline.

use std::time::Duration;

use tokio::sync::oneshot;

/// One runner's thread.
pub struct RunnerThread {
    name: &'static str,
    arbiter: actix_rt::Arbiter,
    /// Fires when the runner's loop has returned.
    done: oneshot::Receiver<()>,
}

impl RunnerThread {
    /// Starts `runner()` on a new arbiter thread. The future is built there, so it need not be
    /// `Send`.
    pub fn start<F, Fut>(name: &'static str, runner: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let arbiter = actix_rt::Arbiter::new();
        let (tx, done) = oneshot::channel();
        let started = arbiter.spawn_fn(move || {
            actix_rt::spawn(async move {
                runner().await;
                let _ = tx.send(());
            });
        });
        if !started {
            tracing::error!(runner = name, "the runner's thread did not start");
        }
        Self {
            name,
            arbiter,
            done,
        }
    }

    /// Waits up to `deadline` for the loop to return (its owner has told it to stop), then
    /// ends the thread whether or not it finished.
    pub async fn stop(self, deadline: Duration) {
        if tokio::time::timeout(deadline, self.done).await.is_err() {
            tracing::warn!(runner = self.name, "a runner overran the shutdown deadline");
        }
        self.arbiter.stop();
        let arbiter = self.arbiter;
        let _ = tokio::task::spawn_blocking(move || arbiter.join()).await;
    }
}
