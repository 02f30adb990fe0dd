//! Settling a channel's deliveries with as few frames as the outcomes allow: acks batched with
//! `multiple`, nacks one by one, and never a message settled before the pipeline said so.
//!
//! RabbitMQ numbers the deliveries of a channel 1, 2, 3, … (the delivery tag). `basic.ack` with
//! `multiple` settles every unacked delivery of the channel up to its tag for the price of one
//! frame, and the broker of one settle command per queue instead of one per message (measured
//! with the bench: RabbitMQ's CPU per delivery fell from 49-65 µs to 24-43 µs; README,
//! Performance). The pipeline finishes messages out of order, so [`Window`] keeps, per channel,
//! which deliveries above the last acked one are settled, and:
//!
//! - acks with `multiple` only the *contiguous* run of settled deliveries after the last ack, and
//!   names a tag that is itself still unacked (the broker closes the channel on a tag it does
//!   not know). A delivery in flight, or left unsettled on purpose (shutdown with its outcomes not
//!   durable: it goes back with the connection), ends the run: nothing passes it.
//! - sends a nack (requeue, or reject into the dead letters) on its own, at once, queued before
//!   any later ack, so a multiple ack never swallows it.
//! - acks a delivery settled *behind* one still in flight (a slow endpoint's event ahead of it)
//!   on its own once it has waited [`Limits::max_delay`], so a slow endpoint holds back only its
//!   own messages, never the prefetch window of everyone else's.
//! - sends a batch at once when everything delivered so far is settled (nothing is worth
//!   waiting for; the usual case at low load, so acks are not delayed there), when
//!   [`Limits::batch`] acks are ready, or when the oldest ready one has waited `max_delay`.
//!
//! When the connection is lost the batcher goes with the session: what it had not sent was
//! never acked, and the broker redelivers it (at least once, never lost). On shutdown
//! [`Acks::finish`] sends everything ready.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use lapin::{
    options::{BasicAckOptions, BasicNackOptions},
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
    /// Longest a ready ack waits behind a delivery still in flight before it is sent alone.
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

/// Measured with the bench (README, Performance): 5 ms and 50 ms gave ~30 messages per ack
/// frame and the lowest broker CPU per delivery; shorter waits sent 2 to 5 times the frames.
const MAX_DELAY: Duration = Duration::from_millis(5);
/// Longer than an out-of-order finish usually lasts (a few ms), far shorter than a slow
/// endpoint's request.
const GAP_DELAY: Duration = Duration::from_millis(50);

/// Deliveries farther than this above the last ack are acked on their own at once instead of
/// tracked: the window never grows beyond it whatever tags the broker sends (the broker itself
/// keeps at most the prefetch count unacked per channel: at most 65,535).
const MAX_TRACKED: u64 = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// In flight, or left to go back with the connection.
    Open,
    /// To be acked; since then.
    Ready(Instant),
    /// Already settled at the broker (nacked, or acked on its own).
    Sent,
}

/// The settlement state of one channel's deliveries above the last contiguous ack.
#[derive(Debug, Default)]
pub struct Window {
    /// Every delivery up to this tag is settled at the broker.
    settled_through: u64,
    /// Tags `settled_through + 1`, `+ 2`, … in order.
    slots: VecDeque<Slot>,
    /// Frames decided but not yet handed out, in the order they must be sent.
    out: Vec<Frame>,
}

impl Window {
    /// Records what the pipeline decided for `tag`. A nack is queued at once; an ack waits for
    /// [`Window::due`]. A tag settled twice keeps its first settlement.
    pub fn settle(&mut self, tag: u64, how: Settlement, now: Instant) {
        let Some(offset) = tag.checked_sub(self.settled_through + 1) else {
            return;
        };
        if offset >= MAX_TRACKED {
            self.out.push(match how {
                Settlement::Ack => Frame::Ack {
                    tag,
                    multiple: false,
                },
                Settlement::Nack { requeue } => Frame::Nack { tag, requeue },
            });
            return;
        }
        // Bounded by MAX_TRACKED just above.
        let index = offset as usize;
        if index >= self.slots.len() {
            self.slots.resize(index + 1, Slot::Open);
        }
        if self.slots[index] != Slot::Open {
            return;
        }
        self.slots[index] = match how {
            Settlement::Ack => Slot::Ready(now),
            Settlement::Nack { requeue } => {
                self.out.push(Frame::Nack { tag, requeue });
                Slot::Sent
            }
        };
    }

    /// The frames to send now, in order, given the highest tag delivered so far.
    pub fn due(&mut self, now: Instant, delivered_through: u64, limits: Limits) -> Vec<Frame> {
        let run = self.run();
        let held = self
            .slots
            .iter()
            .filter(|slot| matches!(slot, Slot::Ready(_)))
            .count();
        let everything_settled = self.settled_through + run.len >= delivered_through;
        let waited = |since: Instant, limit| now.saturating_duration_since(since) >= limit;
        let too_many = held >= limits.hold;
        if run.ready > 0
            && (everything_settled
                || too_many
                || run.ready >= limits.batch
                || run.oldest.is_some_and(|o| waited(o, limits.max_delay)))
        {
            self.send_run(run);
        } else if run.ready == 0 {
            // Only deliveries already settled one by one: nothing to send, just move on.
            self.drop_run(run.len);
        }
        // Behind the first delivery in flight: each on its own, once it has waited long enough.
        let base = self.settled_through;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if let Slot::Ready(since) = *slot {
                if too_many || waited(since, limits.gap_delay) {
                    *slot = Slot::Sent;
                    self.out.push(Frame::Ack {
                        tag: base + index as u64 + 1,
                        multiple: false,
                    });
                }
            }
        }
        std::mem::take(&mut self.out)
    }

    /// Everything that can be sent, whatever its age: for shutdown.
    pub fn finish(&mut self) -> Vec<Frame> {
        let run = self.run();
        if run.ready > 0 {
            self.send_run(run);
        }
        let base = self.settled_through;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if let Slot::Ready(_) = *slot {
                *slot = Slot::Sent;
                self.out.push(Frame::Ack {
                    tag: base + index as u64 + 1,
                    multiple: false,
                });
            }
        }
        std::mem::take(&mut self.out)
    }

    /// When [`Window::due`] will have something to send without any new settlement: when the
    /// oldest ready ack has waited `max_delay`.
    pub fn next_due(&self, limits: Limits) -> Option<Instant> {
        let run = self.run();
        let in_run = run.oldest.map(|oldest| oldest + limits.max_delay);
        let behind = self
            .slots
            .iter()
            .skip(run.len as usize)
            .filter_map(|slot| match slot {
                Slot::Ready(since) => Some(*since + limits.gap_delay),
                _ => None,
            })
            .min();
        in_run.into_iter().chain(behind).min()
    }

    /// Deliveries tracked above the last contiguous ack (at most [`MAX_TRACKED`]).
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.slots.len()
    }

    /// The contiguous run of settled deliveries after `settled_through`.
    fn run(&self) -> Run {
        let mut run = Run::default();
        for slot in &self.slots {
            match *slot {
                Slot::Open => break,
                Slot::Ready(since) => {
                    run.ready += 1;
                    run.last_ready = run.len;
                    run.oldest = Some(run.oldest.map_or(since, |o: Instant| o.min(since)));
                }
                Slot::Sent => {}
            }
            run.len += 1;
        }
        run
    }

    /// One ack for the run, naming its last ready delivery: still unacked, so the broker knows
    /// it, and every delivery before it in the run is settled.
    fn send_run(&mut self, run: Run) {
        self.out.push(Frame::Ack {
            tag: self.settled_through + run.last_ready + 1,
            multiple: run.ready > 1,
        });
        self.drop_run(run.len);
    }

    fn drop_run(&mut self, len: u64) {
        // `len` counts slots, so it fits.
        self.slots.drain(..len as usize);
        self.settled_through += len;
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Run {
    /// Slots in the run.
    len: u64,
    /// Ready (not yet sent) slots in it.
    ready: usize,
    /// Offset of the last ready one.
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

async fn send(channel: &Channel, frames: &[Frame], failed: &mut bool) {
    for frame in frames {
        let result = match *frame {
            Frame::Ack { tag, multiple } => {
                channel.basic_ack(tag, BasicAckOptions { multiple }).await
            }
            Frame::Nack { tag, requeue } => {
                let options = BasicNackOptions {
                    multiple: false,
                    requeue,
                };
                channel.basic_nack(tag, options).await
            }
        };
        if let Err(error) = result {
            // Once is enough: the channel is gone, and the session ends with it.
            if !std::mem::replace(failed, true) {
                warn!(%error, "could not settle messages; the broker will redeliver them");
            }
        }
    }
}

#[cfg(test)]
#[path = "acks_tests.rs"]
mod tests;
