//! Test-only pause points (cargo feature `failpoints`): a test arms a named point on one
//! engine with [`Engine::pause_at`](super::Engine::pause_at), waits until the engine
//! reaches it, does what must happen "in between" (another request, a restart), and
//! releases it — so races are forced deterministically instead of by sleeping. A point
//! pauses once per arming; without the feature, [`PausePoints::pause`] returns at once and
//! the type holds nothing.

#[cfg(feature = "failpoints")]
use std::collections::HashMap;
#[cfg(feature = "failpoints")]
use tokio::sync::oneshot;

/// An armed point's engine side: "reached" to send, "release" to wait for.
#[cfg(feature = "failpoints")]
type Armed = (oneshot::Sender<()>, oneshot::Receiver<()>);

/// The armed pause points of one engine.
#[derive(Debug, Default)]
pub(crate) struct PausePoints {
    #[cfg(feature = "failpoints")]
    armed: std::sync::Mutex<HashMap<&'static str, Armed>>,
}

impl PausePoints {
    /// Waits at `name` if a test armed it: tells the test it was reached, then waits for
    /// the release (or for the test's handle to be dropped).
    pub(crate) async fn pause(&self, name: &'static str) {
        #[cfg(feature = "failpoints")]
        {
            let armed = self
                .armed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(name);
            if let Some((reached, release)) = armed {
                let _ = reached.send(());
                let _ = release.await;
            }
        }
        #[cfg(not(feature = "failpoints"))]
        let _ = name;
    }

    #[cfg(feature = "failpoints")]
    fn arm(&self, name: &'static str) -> Pause {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        self.armed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, (reached_tx, release_rx));
        Pause {
            reached: Some(reached_rx),
            release: Some(release_tx),
        }
    }
}

/// A test's handle on an armed pause point; dropping it releases the point.
#[cfg(feature = "failpoints")]
#[derive(Debug)]
pub struct Pause {
    reached: Option<oneshot::Receiver<()>>,
    release: Option<oneshot::Sender<()>>,
}

#[cfg(feature = "failpoints")]
impl Pause {
    /// Resolves once the engine waits at the point.
    pub async fn reached(&mut self) {
        if let Some(rx) = self.reached.take() {
            let _ = rx.await;
        }
    }

    /// Lets the engine go on.
    pub fn release(&mut self) {
        if let Some(tx) = self.release.take() {
            let _ = tx.send(());
        }
    }
}

#[cfg(feature = "failpoints")]
impl super::Engine {
    /// Arms the pause point `name` (test-only, feature `failpoints`).
    #[doc(hidden)]
    pub fn pause_at(&self, name: &'static str) -> Pause {
        self.pauses.arm(name)
    }
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_point_pauses_once_until_released() {
        let points = std::sync::Arc::new(PausePoints::default());
        let mut pause = points.arm("p");
        let worker = {
            let points = std::sync::Arc::clone(&points);
            tokio::spawn(async move {
                points.pause("p").await;
                // Not armed any more: passes straight through.
                points.pause("p").await;
            })
        };
        pause.reached().await;
        assert!(!worker.is_finished());
        pause.release();
        worker.await.unwrap();
    }

    #[tokio::test]
    async fn an_unarmed_point_does_not_wait() {
        PausePoints::default().pause("nothing").await;
    }
}
