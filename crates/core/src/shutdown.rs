//! A cloneable shutdown signal. Servers stop accepting when it fires and drain in-flight work
//! until their deadline.

use tokio::sync::watch;

/// Fires once; every clone observes it.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The trigger half of [`Shutdown`].
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// A new untriggered signal.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
    pub fn subscribe(&self) -> Shutdown {
        Shutdown { rx: self.tx.subscribe() }
    }
}

impl Shutdown {
    /// Completes when shutdown has been triggered (or the trigger was dropped).
    pub async fn wait(&mut self) {
        let _ = self.rx.wait_for(|v| *v).await;
    }
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }
}
