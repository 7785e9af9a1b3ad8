//! API tests: each starts a real Epistle (HTTP on port 0, a fresh database)
//! with an SMTP sink on a free port, and talks to it over HTTP.

mod helpers;

mod accept;
mod bad_input;
mod calendar;
mod delivery;
mod domains;
mod events;
mod feedback;
mod health;
mod hooks;
mod mx;
mod providers;
mod returned;
mod routing;
mod smtp;
mod templates;
mod ui;
mod workflows;
