//! Endpoint health end to end: adaptive concurrency, waiting bounded by progress, parking and
//! the circuit breaker ([`flow`]), and what each answer means ([`answers`]), against real
//! receivers on 127.0.0.1 (`support::PacedReceiver`) and the real RabbitMQ. What is bounded by wall-clock
//! time (a burst's delivery time, a share of an endpoint's capacity, the cost of a hanging
//! endpoint to a healthy one) is in the `throughput` test binary, run alone.

mod answers;
mod disable;
mod flow;
mod parking;
mod store;
