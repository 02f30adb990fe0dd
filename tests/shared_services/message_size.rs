//! The broker refuses an oversized message where its bytes arrive: RabbitMQ's
//! `max_message_size` (rabbitmq.conf; 128 MiB by default, 512 MiB at most). Set near
//! `amqp.max_message_bytes`, a producer's oversized event is refused at its publish (its channel
//! closed with PRECONDITION_FAILED, its confirm an error) and never reaches the worker, which
//! would otherwise receive it whole before it can tell it is too large. This test sets the value
//! at run time (`application:set_env`, read by each new channel) and restores it when dropped.

use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    BasicProperties, Connection, ConnectionProperties,
};

use crate::support::{amqp_url, unique_prefix, InProcessWorker};

const LIMIT: usize = 64 * 1024;

/// Sets the broker's `max_message_size`; puts back what was there when dropped, whatever
/// happened.
struct MaxMessageSizeGuard {
    previous: String,
}

fn eval(expression: &str) -> String {
    let output = crate::support::rabbitmqctl()
        .args(["eval", expression])
        .output()
        .expect("rabbitmqctl");
    assert!(output.status.success(), "rabbitmqctl eval {expression}");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

impl MaxMessageSizeGuard {
    fn set(bytes: usize) -> Self {
        // "{ok,134217728}", or "undefined" when never set.
        let previous = eval("application:get_env(rabbit, max_message_size).");
        let guard = Self { previous };
        eval(&format!(
            "application:set_env(rabbit, max_message_size, {bytes})."
        ));
        guard
    }
}

impl Drop for MaxMessageSizeGuard {
    fn drop(&mut self) {
        let restore = match self
            .previous
            .strip_prefix("{ok,")
            .and_then(|rest| rest.strip_suffix('}'))
        {
            Some(value) => format!("application:set_env(rabbit, max_message_size, {value})."),
            None => "application:unset_env(rabbit, max_message_size).".to_string(),
        };
        let _ = crate::support::rabbitmqctl()
            .args(["eval", &restore])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_refuses_a_message_over_its_max_message_size_at_the_publish() {
    let prefix = unique_prefix();
    let broker = InProcessWorker::publisher_for(&prefix).await;
    let _limit = MaxMessageSizeGuard::set(LIMIT);
    // A channel opened after the setting has it.
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let publish = |size: usize| {
        let channel = channel.clone();
        let exchange = broker.names.events_exchange.clone();
        async move {
            let body = vec![b' '; size];
            let properties = BasicProperties::default().with_delivery_mode(2);
            let confirm = channel
                .basic_publish(
                    &exchange,
                    "business.updated",
                    BasicPublishOptions::default(),
                    &body,
                    properties,
                )
                .await?;
            confirm.await
        }
    };
    publish(LIMIT / 2)
        .await
        .expect("a message under the limit is taken");
    let refused = publish(LIMIT + 1).await;
    eprintln!(
        "max_message_size {LIMIT}: a message of {} bytes: {refused:?}",
        LIMIT + 1
    );
    let error = refused.expect_err("a message over the limit is refused");
    assert!(
        format!("{error:?}").to_lowercase().contains("max size"),
        "refused for its size: {error:?}"
    );
    assert!(
        !channel.status().connected(),
        "the broker closed the channel"
    );
    let (ready, _) = broker.queue_counts(&broker.names.incoming).await;
    assert_eq!(
        ready, 1,
        "only the message under the limit reached the queue"
    );
    broker.delete_topology().await;
}
