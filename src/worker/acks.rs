//! Settling a channel's deliveries with as few frames as the outcomes allow: acks batched with
//! `multiple`, nacks one by one, and never a message settled before the pipeline said so.
//!
//! RabbitMQ numbers the deliveries of a channel 1, 2, 3, … (the delivery tag). `basic.ack` with
//! `multiple` settles every unacked delivery of the channel up to its tag for the price of one
//! frame, and the broker of one settle command per queue instead of one per message (measured
//! with the bench: RabbitMQ's CPU per delivery fell from 49-65 µs to 24-43 µs;
//! docs/performance.md). The pipeline finishes messages out of order, so [`Window`] keeps, per
//! channel, which deliveries above the last acked one are settled, and:
//!
//! - acks with `multiple` only the *contiguous* run of settled deliveries after the last ack, and
//!   names a tag that is itself still unacked (the broker closes the channel on a tag it does
//!   not know). A delivery in flight, or left unsettled on purpose (shutdown with its outcomes not
//!   durable: it goes back with the connection), ends the run: nothing passes it.
//! - sends a nack (requeue, or reject into the dead letters) on its own, at once, queued before
//!   any later ack, so a multiple ack never swallows it. It goes out as `basic.reject` (one
//!   message, never `multiple`): RabbitMQ 4.x counts a reject, not a nack, towards
//!   `x-delivery-limit`.
//! - acks deliveries settled *behind* one still in flight on their own once that one has held
//!   them back for [`Limits::gap_delay`] (it is a slow endpoint's, not a moment's reordering),
//!   or when half the prefetch window waits: a slow endpoint holds back only its own messages,
//!   never the prefetch window of everyone else's.
//! - sends a batch at once when everything delivered so far is settled (nothing is worth
//!   waiting for; the usual case at low load, so acks are not delayed there), when
//!   [`Limits::batch`] acks are ready, or when the oldest ready one has waited `max_delay`.
//!
//! When the connection is lost the batcher goes with the session: what it had not sent was
//! never acked, and the broker redelivers it (at least once, never lost). On shutdown
//! [`Acks::finish`] sends everything ready.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::Poll,
    time::Duration,
};

use lapin::{
    options::{BasicAckOptions, BasicRejectOptions},
    Channel,
};
use tokio::{sync::mpsc, task::JoinHandle, time::Instant};
use tracing::warn;

/// What the pipeline decided for one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    Ack,
    /// `requeue`: back to the queue; otherwise the queue's dead-letter route takes it.
    Nack {
        requeue: bool,
    },
}

/// One frame to send, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    Ack { tag: u64, multiple: bool },
    Nack { tag: u64, requeue: bool },
}

/// When a batch goes out.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Acks ready in the contiguous run that send it at once.
    pub batch: usize,
    /// Acks ready in all past which every one of them is sent at once, behind a gap too: the
    /// broker sends nothing more while the prefetch window is spent, so never more than
    /// half of it is held back.
    pub hold: usize,
    /// Longest a ready ack waits for its batch to fill.
    pub max_delay: Duration,
    /// How long a delivery still in flight may hold back the acks behind it: after that it is a
    /// slow one (an endpoint that hangs), and what settles behind it is acked alone at once.
    pub gap_delay: Duration,
}

impl Limits {
    /// A quarter of the prefetch window: the broker gets credit back in steps well before the
    /// window is spent, and each batch is still one frame for dozens of messages.
    pub fn for_prefetch(prefetch: u16) -> Self {
        Self {
            batch: usize::from(prefetch / 4).max(1),
            hold: usize::from(prefetch / 2).max(1),
            max_delay: MAX_DELAY,
            gap_delay: GAP_DELAY,
        }
    }
}

/// Measured with the bench (docs/performance.md): 5 ms gave 25-38 messages per ack frame and
/// the lowest broker CPU per delivery; 2 ms sent 10 times the frames.
const MAX_DELAY: Duration = Duration::from_millis(5);
/// Longer than an out-of-order finish usually lasts (a few ms), far shorter than a slow
/// endpoint's request; short enough that a hanging endpoint's deliveries cost the others
/// little of the prefetch window (tests/throughput: at most 20 % of their speed).
const GAP_DELAY: Duration = Duration::from_millis(20);

/// Deliveries farther than this above the highest settled one are acked on their own at once
/// instead of tracked: whatever tags the broker sends, the window never tracks more (the broker
/// itself keeps at most the prefetch count unacked per channel: at most 65,535).
const MAX_TRACKED: u64 = 1 << 16;

/// The settlement state of one channel's deliveries above the last contiguous ack. Sparse: a
/// delivery settled on its own behind one that stays in flight (a hanging endpoint's, for the
/// 30 s of its timeout) takes no room, so both maps hold at most what the broker has unacked,
/// the prefetch count, and every look at them costs at most that.
#[derive(Debug, Default)]
pub struct Window {
    /// Every delivery up to this tag is settled at the broker (or its frame is in `out`).
    settled_through: u64,
    /// The highest tag settled by the pipeline. Above `settled_through` and up to it, a tag is
    /// open (in `open`), ready (in `ready`), or already settled on its own (in neither).
    highest: u64,
    /// Deliveries in flight (or left to go back with the connection) below `highest`: since
    /// when each holds back the settled ones after it.
    open: BTreeMap<u64, Instant>,
    /// Deliveries to ack, and since when.
    ready: BTreeMap<u64, Instant>,
    /// Frames decided but not yet handed out, in the order they must be sent.
    out: Vec<Frame>,
}

impl Window {
    /// Records what the pipeline decided for `tag`. A nack is queued at once; an ack waits for
    /// [`Window::due`]. A tag settled twice keeps its first settlement.
    pub fn settle(&mut self, tag: u64, how: Settlement, now: Instant) {
        if tag <= self.settled_through {
            return;
        }
        if tag > self.highest {
            if tag - self.highest > MAX_TRACKED {
                self.out.push(match how {
                    Settlement::Ack => Frame::Ack {
                        tag,
                        multiple: false,
                    },
                    Settlement::Nack { requeue } => Frame::Nack { tag, requeue },
                });
                return;
            }
            // Every delivery before `tag` not yet settled now holds it back. Each tag is opened
            // once in its life: bounded by MAX_TRACKED just above.
            let first = self.highest.max(self.settled_through) + 1;
            self.open.extend((first..tag).map(|t| (t, now)));
            self.highest = tag;
        } else if self.open.remove(&tag).is_none() {
            // Ready or settled already.
            return;
        }
        match how {
            Settlement::Ack => {
                self.ready.insert(tag, now);
            }
            Settlement::Nack { requeue } => self.out.push(Frame::Nack { tag, requeue }),
        }
    }

    /// The frames to send now, in order, given the highest tag delivered so far.
    pub fn due(&mut self, now: Instant, delivered_through: u64, limits: Limits) -> Vec<Frame> {
        let run = self.run();
        let everything_settled = run.end >= delivered_through;
        let waited = |since: Instant, limit| now.saturating_duration_since(since) >= limit;
        let too_many = self.ready.len() >= limits.hold;
        // The first delivery in flight has held back the settled ones after it long enough: it
        // is a slow one (a hanging endpoint's), and the run before it will not grow.
        let stuck = self
            .first_gap()
            .is_some_and(|since| waited(since, limits.gap_delay));
        if run.ready > 0
            && (everything_settled
                || too_many
                || stuck
                || run.ready >= limits.batch
                || run.oldest.is_some_and(|o| waited(o, limits.max_delay)))
        {
            self.send_run(run);
        } else if run.ready == 0 {
            // Only deliveries already settled one by one: nothing to send, just move on.
            self.settled_through = run.end;
        }
        // Behind the first delivery in flight: each on its own.
        if too_many || stuck {
            self.send_behind(run.end);
        }
        std::mem::take(&mut self.out)
    }

    /// Everything that can be sent, whatever its age: for shutdown.
    pub fn finish(&mut self) -> Vec<Frame> {
        let run = self.run();
        if run.ready > 0 {
            self.send_run(run);
        }
        self.send_behind(run.end);
        std::mem::take(&mut self.out)
    }

    /// When [`Window::due`] will have something to send without any new settlement: when the
    /// run's oldest ready ack has waited `max_delay`, or the delivery holding back the ready
    /// acks behind it has done so for `gap_delay`.
    pub fn next_due(&self, limits: Limits) -> Option<Instant> {
        let run = self.run();
        let in_run = run.oldest.map(|oldest| oldest + limits.max_delay);
        let behind = self
            .ready
            .range(run.end + 1..)
            .next()
            .and(self.first_gap())
            .map(|since| since + limits.gap_delay);
        in_run.into_iter().chain(behind).min()
    }

    /// Deliveries tracked above the last contiguous ack.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.open.len() + self.ready.len()
    }

    /// Since when the first delivery still in flight holds back settled ones behind it.
    fn first_gap(&self) -> Option<Instant> {
        self.open.first_key_value().map(|(_, since)| *since)
    }

    /// The contiguous run of settled deliveries after `settled_through`: up to the first one
    /// still open, or to the highest settled.
    fn run(&self) -> Run {
        let end = self
            .open
            .first_key_value()
            .map_or(self.highest, |(tag, _)| tag - 1)
            .max(self.settled_through);
        let mut run = Run {
            end,
            ..Run::default()
        };
        for (tag, since) in self.ready.range(..=end) {
            run.ready += 1;
            run.last_ready = *tag;
            run.oldest = Some(run.oldest.map_or(*since, |o: Instant| o.min(*since)));
        }
        run
    }

    /// One ack for the run, naming its last ready delivery: still unacked, so the broker knows
    /// it, and every delivery before it in the run is settled.
    fn send_run(&mut self, run: Run) {
        self.out.push(Frame::Ack {
            tag: run.last_ready,
            multiple: run.ready > 1,
        });
        self.ready = self.ready.split_off(&(run.end + 1));
        self.settled_through = run.end;
    }

    /// Every ready ack after `end`, each on its own.
    fn send_behind(&mut self, end: u64) {
        let behind = self.ready.split_off(&(end + 1));
        self.out.extend(behind.into_keys().map(|tag| Frame::Ack {
            tag,
            multiple: false,
        }));
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Run {
    /// The run's last tag (`settled_through` when it is empty).
    end: u64,
    /// Ready (not yet sent) acks in it.
    ready: usize,
    /// The last of them.
    last_ready: u64,
    oldest: Option<Instant>,
}

enum Command {
    Settle(u64, Settlement),
    Finish,
}

/// The batcher of one channel: a task that owns its [`Window`] and is the only sender of acks
/// and nacks on the channel, so frames leave in the order the window decided. Cheap to clone.
#[derive(Clone)]
pub struct Acks {
    /// Unbounded, yet never long: each delivery sends one settlement, and the broker keeps at
    /// most the prefetch count of deliveries unsettled on the channel.
    commands: mpsc::UnboundedSender<Command>,
    /// The highest tag the consumer has received: when everything up to it is settled, a batch
    /// goes out at once instead of waiting for more.
    delivered: Arc<AtomicU64>,
}

impl Acks {
    pub fn spawn(channel: Channel, limits: Limits) -> (Self, JoinHandle<()>) {
        let (commands, receiver) = mpsc::unbounded_channel();
        let delivered = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(channel, receiver, delivered.clone(), limits));
        (
            Self {
                commands,
                delivered,
            },
            task,
        )
    }

    /// The consumer received `tag`.
    pub fn delivered(&self, tag: u64) {
        self.delivered.fetch_max(tag, Ordering::Relaxed);
    }

    /// The pipeline's decision for `tag`. After [`Acks::finish`] it is not sent: the message
    /// goes back to the queue with the connection.
    pub fn settle(&self, tag: u64, how: Settlement) {
        let _ = self.commands.send(Command::Settle(tag, how));
    }

    /// Sends everything ready and stops; await the task's handle for it to be sent.
    pub fn finish(&self) {
        let _ = self.commands.send(Command::Finish);
    }
}

async fn run(
    channel: Channel,
    mut commands: mpsc::UnboundedReceiver<Command>,
    delivered: Arc<AtomicU64>,
    limits: Limits,
) {
    let mut window = Window::default();
    let mut failed = false;
    loop {
        // `None`: the oldest ready ack has waited long enough.
        let woke = match window.next_due(limits) {
            Some(at) => tokio::select! {
                command = commands.recv() => Some(command),
                _ = tokio::time::sleep_until(at) => None,
            },
            None => Some(commands.recv().await),
        };
        let now = Instant::now();
        let mut finishing = false;
        if let Some(mut command) = woke {
            // Take every settlement already waiting too: one batch for all of them.
            loop {
                match command {
                    None | Some(Command::Finish) => {
                        finishing = true;
                        break;
                    }
                    Some(Command::Settle(tag, how)) => window.settle(tag, how, now),
                }
                match commands.try_recv() {
                    Ok(next) => command = Some(next),
                    Err(_) => break,
                }
            }
        }
        let frames = if finishing {
            window.finish()
        } else {
            window.due(now, delivered.load(Ordering::Relaxed), limits)
        };
        send(&channel, &frames, &mut failed).await;
        if finishing {
            return;
        }
    }
}

/// Sends `frames` in order. lapin queues a frame when its future is first polled and resolves
/// it once its I/O thread has written it: each is queued at once, in order, and only then are
/// they waited for, so that a run of single acks (behind a hanging endpoint's delivery, every
/// delivery is acked on its own) costs one trip to the I/O thread instead of one per frame:
/// waited for one at a time, they held back the acks after them, and the prefetch window.
async fn send(channel: &Channel, frames: &[Frame], failed: &mut bool) {
    let mut unsent = Vec::new();
    for frame in frames {
        let mut sending = Box::pin(send_one(channel, *frame));
        match futures_util::poll!(sending.as_mut()) {
            Poll::Ready(result) => report(result, failed),
            Poll::Pending => unsent.push(sending),
        }
    }
    for sending in unsent {
        report(sending.await, failed);
    }
}

async fn send_one(channel: &Channel, frame: Frame) -> lapin::Result<()> {
    match frame {
        Frame::Ack { tag, multiple } => channel.basic_ack(tag, BasicAckOptions { multiple }).await,
        // basic.reject, not basic.nack: RabbitMQ 4.x counts only a reject towards
        // x-delivery-limit, which bounds the requeue loop of a message the database cannot serve.
        Frame::Nack { tag, requeue } => {
            channel
                .basic_reject(tag, BasicRejectOptions { requeue })
                .await
        }
    }
}

fn report(result: lapin::Result<()>, failed: &mut bool) {
    if let Err(error) = result {
        // Once is enough: the channel is gone, and the session ends with it.
        if !std::mem::replace(failed, true) {
            warn!(%error, "could not settle messages; the broker will redeliver them");
        }
    }
}

#[cfg(test)]
#[path = "acks_tests.rs"]
mod tests;
