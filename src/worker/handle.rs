//! One message's task: hand it to the [`Pipeline`], and settle it by the answer.
//!
//! A panic inside the handling is caught: counted (`handler_panics_total`), logged, and the
//! message dead-lettered with reason `panic`, so its prefetch slot is freed instead of held
//! until the connection goes. When the session is lost (`lost` is cancelled) the task starts no
//! new request and publishes nothing (see [`session`]); a request in flight is let finish, and
//! the next session starts only once every task of this one has ended, so no two requests for
//! one event and webhook are in flight at once.

use std::{any::Any, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures_util::FutureExt;
use lapin::message::Delivery;
use tokio_util::sync::CancellationToken;
use tracing::error;

use super::{
    acks::{Acks, Settlement},
    Source,
};
use crate::{
    pipeline::{session, Disposition, Pipeline},
    queue::Outlet,
};

pub(super) async fn handle(
    pipeline: Arc<Pipeline>,
    outlet: Outlet,
    source: Source,
    mut delivery: Delivery,
    acks: Acks,
    lost: CancellationToken,
) {
    // Shared from here on: the event's text and its bodies are views of it, not copies.
    let data = bytes::Bytes::from(std::mem::take(&mut delivery.data));
    let headers = delivery.properties.headers().as_ref();
    let work = async {
        #[cfg(feature = "test-hooks")]
        if crate::queue::header_text(headers, "x-test-panic").is_some() {
            panic!("test hook: the message asked for a panic (x-test-panic)");
        }
        if pipeline.over_delivery_limit(headers) {
            let over = match source {
                Source::Incoming => pipeline.event_over_limit(&outlet, &data, headers).await,
                Source::Deliveries => pipeline.job_over_limit(&outlet, &data, headers).await,
            };
            if let Some(disposition) = over {
                return disposition;
            }
        }
        match source {
            Source::Incoming => {
                let routing_key = delivery.routing_key.as_str();
                pipeline
                    .handle_event(&outlet, &data, headers, routing_key)
                    .await
            }
            Source::Deliveries => pipeline.handle_job(&outlet, &data, headers).await,
        }
    };
    let caught = AssertUnwindSafe(session::within(lost.clone(), work))
        .catch_unwind()
        .await;
    let disposition = match caught {
        Ok(disposition) => disposition,
        Err(panic) => {
            let detail = panic_message(panic.as_ref());
            error!(
                delivery_tag = delivery.delivery_tag,
                detail, "handling a message panicked; dead-lettering it (reason panic)"
            );
            let dead = pipeline.dead_letter_panic(&outlet, &data, headers, detail);
            session::within(lost, dead).await
        }
    };
    let settlement = match disposition {
        Disposition::Ack => Settlement::Ack,
        Disposition::Requeue => {
            // Give the broker a moment before the message comes round again.
            tokio::time::sleep(Duration::from_secs(1)).await;
            Settlement::Nack { requeue: true }
        }
        // The queue's dead-letter route takes it, with reason "rejected".
        Disposition::Reject => Settlement::Nack { requeue: false },
        // The session ended with outcomes not durable: the broker hands it back.
        Disposition::Leave => return,
    };
    acks.settle(delivery.delivery_tag, settlement);
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    // A dead letter's header, not a novel.
    text.chars().take(200).collect()
}
