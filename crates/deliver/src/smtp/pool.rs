//! A pool of SMTP connections to one relay: at most `max` sessions at once,
//! idle ones reused across messages, retired after `max_messages`
//! transactions or `idle_timeout` unused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use super::client::{SmtpConnection, SmtpError, SmtpSettings};

pub struct Pool {
    settings: SmtpSettings,
    idle: Mutex<Vec<(SmtpConnection, Instant)>>,
    slots: Arc<Semaphore>,
    pub max_messages: u32,
    pub idle_timeout: Duration,
}

/// A connection checked out of the pool, with its slot.
pub struct Lease {
    pub conn: SmtpConnection,
    /// True when the connection was reused (so a failure may just mean the
    /// server closed it while idle).
    pub reused: bool,
    permit: OwnedSemaphorePermit,
}

impl Pool {
    pub fn new(settings: SmtpSettings, max: usize) -> Self {
        Self {
            settings,
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(max.max(1))),
            max_messages: 100,
            idle_timeout: Duration::from_secs(30),
        }
    }

    pub fn settings(&self) -> &SmtpSettings {
        &self.settings
    }

    /// Waits for a slot, then reuses an idle connection or opens one.
    pub async fn get(&self) -> Result<Lease, SmtpError> {
        let permit = self.slots.clone().acquire_owned().await.map_err(|_| SmtpError::Protocol("pool closed".into()))?;
        loop {
            let next = self.idle.lock().await.pop();
            match next {
                Some((conn, since)) if since.elapsed() < self.idle_timeout && !conn.broken => {
                    return Ok(Lease { conn, reused: true, permit });
                }
                Some((conn, _)) => {
                    tokio::spawn(conn.quit());
                }
                None => break,
            }
        }
        let conn = SmtpConnection::connect(&self.settings).await?;
        Ok(Lease { conn, reused: false, permit })
    }

    /// Opens a fresh connection in the slot of a lease whose reused
    /// connection turned out dead.
    pub async fn reconnect(&self, lease: Lease) -> Result<Lease, SmtpError> {
        let conn = SmtpConnection::connect(&self.settings).await?;
        Ok(Lease { conn, reused: false, permit: lease.permit })
    }

    /// Returns a connection for reuse, or closes it.
    pub async fn put(&self, lease: Lease) {
        let Lease { conn, permit, .. } = lease;
        if conn.broken || conn.transactions >= self.max_messages {
            tokio::spawn(conn.quit());
        } else {
            self.idle.lock().await.push((conn, Instant::now()));
        }
        // Only now free the slot, so the next taker finds this connection idle.
        drop(permit);
    }

    /// Closes idle connections (on shutdown).
    pub async fn close_idle(&self) {
        let conns: Vec<_> = self.idle.lock().await.drain(..).collect();
        for (c, _) in conns {
            c.quit().await;
        }
    }
}
