//! Getting mail out: transports, failover, retry policy and the worker that
//! claims due recipients and records what happened to them.
//!
//! A transport answers per recipient with a [`Delivery`] (sent, transient or
//! permanent), or fails the whole session with a [`SessionError`] (could not
//! connect, TLS or AUTH failed, greeting refused): then the [`Route`] tries
//! the next transport, and a circuit breaker stops hammering the dead one.

pub mod capture;
pub mod circuit;
pub mod dkim;
pub mod dns;
pub mod domains;
pub mod events;
pub mod metrics;
pub mod mx;
pub mod providers;
pub mod retry;
pub mod route;
pub mod shaping;
pub mod smtp;
pub mod transport;
pub mod webhooks;
pub mod worker;

pub use dkim::Keyring;
pub use metrics::Metrics;
pub use retry::RetryPolicy;
pub use route::{Hop, Route, RouteMatch, Router};
pub use transport::{Delivery, Envelope, SessionError, Transport};
pub use worker::{Worker, WorkerConfig};
