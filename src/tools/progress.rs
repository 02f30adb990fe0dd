//! How `dead-letters replay` shows its progress on stderr: a progress bar (indicatif) when stderr
//! is a terminal, otherwise plain lines a log keeps: one at the start, one at most every
//! [`PLAIN_INTERVAL`] while it goes, a line for each letter skipped (its event id, the reason it
//! died and why it stays), and a summary at the end with the skipped counted by why. Never a
//! message's body, another header or the broker's URL. Stdout keeps the JSON summary, which
//! scripts read.

use std::{
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::tools::dead_letters::{ReplayProgress, ReplaySummary, SkippedLetter};

/// How often a plain progress line is written at most: often enough for whoever watches a log,
/// rarely enough that a long replay writes a line a second, not a line a message.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(1);

/// The replay's progress on stderr, as suits what stderr is.
pub enum ReplayDisplay {
    /// A terminal: a bar redrawn in place, made once the count is known.
    Bar {
        bar: Option<ProgressBar>,
        queue: String,
    },
    /// Anything else (a file, a pipe, a CI log): plain lines.
    Lines(PlainLines<std::io::Stderr>),
}

impl ReplayDisplay {
    /// A bar when stderr is a terminal, plain lines otherwise; `queue` is the dead-letter queue.
    pub fn on_stderr(queue: &str) -> Self {
        if std::io::stderr().is_terminal() {
            Self::Bar {
                bar: None,
                queue: queue.to_string(),
            }
        } else {
            Self::Lines(PlainLines::new(std::io::stderr(), queue))
        }
    }
}

/// The bar: short beside it, so that the bar keeps its width on an 80-column terminal.
fn bar(queue: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    // The counts are one message, not {pos}/{len} beside it: each is drawn when it changes, so
    // the two could show different moments.
    let style = ProgressStyle::with_template("{spinner} [{wide_bar}] {msg} · {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar.set_message(bar_counts(&ReplaySummary::default(), total));
    bar.println(start_line(queue, total));
    bar
}

impl ReplayProgress for ReplayDisplay {
    fn started(&mut self, total: u64) {
        match self {
            Self::Bar { bar: slot, queue } => *slot = Some(bar(queue, total)),
            Self::Lines(lines) => lines.started(total),
        }
    }

    fn skipped(&mut self, letter: &SkippedLetter) {
        let line = skipped_line(letter);
        match self {
            // Printed above the bar, which is redrawn below it.
            Self::Bar { bar: Some(bar), .. } => bar.println(line),
            Self::Bar { bar: None, .. } => eprintln!("{line}"),
            Self::Lines(lines) => lines.write(&line),
        }
    }

    fn advanced(&mut self, summary: &ReplaySummary) {
        match self {
            Self::Bar { bar: Some(bar), .. } => {
                let done = looked_at(summary);
                // Dead letters that arrived after the count was taken.
                let total = bar.length().unwrap_or_default().max(done);
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message(bar_counts(summary, total));
            }
            Self::Bar { bar: None, .. } => {}
            Self::Lines(lines) => lines.advanced_at(summary, Instant::now()),
        }
    }

    fn finished(&mut self, summary: &ReplaySummary, complete: bool) {
        match self {
            Self::Bar { bar, queue } => {
                if let Some(bar) = bar.take() {
                    bar.finish_and_clear();
                }
                eprintln!("{}", final_line(queue, summary, complete));
            }
            Self::Lines(lines) => lines.finished(summary, complete),
        }
    }
}

/// Plain progress lines on `out`.
pub struct PlainLines<W: Write> {
    out: W,
    queue: String,
    total: u64,
    /// When the last line was written: the next waits [`PLAIN_INTERVAL`].
    last_line: Option<Instant>,
}

impl<W: Write> PlainLines<W> {
    pub fn new(out: W, queue: &str) -> Self {
        Self {
            out,
            queue: queue.to_string(),
            total: 0,
            last_line: None,
        }
    }

    fn started(&mut self, total: u64) {
        self.total = total;
        self.last_line = Some(Instant::now());
        let line = start_line(&self.queue, total);
        self.write(&line);
    }

    /// One more dead letter looked at, at `now`: a line when the last one is old enough.
    pub fn advanced_at(&mut self, summary: &ReplaySummary, now: Instant) {
        let done = looked_at(summary);
        self.total = self.total.max(done);
        if self
            .last_line
            .is_some_and(|last| now.duration_since(last) < PLAIN_INTERVAL)
        {
            return;
        }
        self.last_line = Some(now);
        let line = format!(
            "replay: {done}/{} looked at ({})",
            self.total,
            counts(summary)
        );
        self.write(&line);
    }

    fn finished(&mut self, summary: &ReplaySummary, complete: bool) {
        let line = final_line(&self.queue, summary, complete);
        self.write(&line);
    }

    /// Progress lines are a courtesy: one that cannot be written does not stop the replay.
    fn write(&mut self, line: &str) {
        let _ = writeln!(self.out, "{line}").and_then(|()| self.out.flush());
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

fn looked_at(summary: &ReplaySummary) -> u64 {
    (summary.replayed + summary.skipped) as u64
}

fn counts(summary: &ReplaySummary) -> String {
    format!("replayed {}, skipped {}", summary.replayed, summary.skipped)
}

fn bar_counts(summary: &ReplaySummary, total: u64) -> String {
    format!("{}/{total} · {}", looked_at(summary), counts(summary))
}

fn skipped_line(letter: &SkippedLetter) -> String {
    format!("replay: skipped {letter}")
}

fn start_line(queue: &str, total: u64) -> String {
    format!("replay: {total} dead letters to look at in {queue}")
}

fn final_line(queue: &str, summary: &ReplaySummary, complete: bool) -> String {
    let how = if complete { "done" } else { "stopped" };
    let mut line = format!(
        "replay: {how}: {} looked at in {queue}, {}",
        looked_at(summary),
        counts(summary)
    );
    if !summary.skipped_by_reason.is_empty() {
        let reasons: Vec<String> = summary
            .skipped_by_reason
            .iter()
            .map(|(why, n)| format!("{} {n}", why.as_str()))
            .collect();
        line.push_str(&format!(" ({})", reasons.join(", ")));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(replayed: usize, skipped: usize) -> ReplaySummary {
        ReplaySummary {
            replayed,
            skipped,
            ..ReplaySummary::default()
        }
    }

    #[test]
    fn plain_lines_come_at_the_start_at_most_once_a_second_and_at_the_end() {
        let mut lines = PlainLines::new(Vec::new(), "webhooks.dead");
        lines.started(5);
        let start = lines.last_line.expect("the start line was written");
        lines.advanced_at(&summary(1, 0), start + Duration::from_millis(10));
        lines.advanced_at(&summary(2, 0), start + Duration::from_millis(999));
        lines.advanced_at(&summary(2, 1), start + Duration::from_millis(1000));
        lines.advanced_at(&summary(3, 1), start + Duration::from_millis(1500));
        // More than the count taken at the start: the total grows rather than lying.
        lines.advanced_at(&summary(5, 1), start + Duration::from_millis(2100));
        lines.finished(&summary(5, 1), true);
        let text = String::from_utf8(lines.into_inner()).unwrap();
        assert_eq!(
            text,
            "replay: 5 dead letters to look at in webhooks.dead\n\
             replay: 3/5 looked at (replayed 2, skipped 1)\n\
             replay: 6/6 looked at (replayed 5, skipped 1)\n\
             replay: done: 6 looked at in webhooks.dead, replayed 5, skipped 1\n"
        );
    }

    #[test]
    fn each_skipped_letter_gets_a_line_and_the_summary_counts_them_by_why() {
        use crate::tools::dead_letters::SkipReason;
        let mut lines = PlainLines::new(Vec::new(), "webhooks.dead");
        let letter = SkippedLetter {
            event_id: Some("evt_1".into()),
            dead_reason: Some("retries_exhausted".into()),
            why: SkipReason::OtherWebhook,
        };
        lines.write(&skipped_line(&letter));
        let mut done = summary(1, 2);
        done.skipped_by_reason = [
            (SkipReason::NotReplayable, 1),
            (SkipReason::OtherWebhook, 1),
        ]
        .into_iter()
        .collect();
        lines.finished(&done, true);
        let text = String::from_utf8(lines.into_inner()).unwrap();
        assert_eq!(
            text,
            "replay: skipped event evt_1 (dead: retries_exhausted): it belongs to another webhook \
             than --webhook-id\n\
             replay: done: 3 looked at in webhooks.dead, replayed 1, skipped 2 \
             (not_replayable 1, other_webhook 1)\n"
        );
    }

    #[test]
    fn a_replay_that_failed_part_way_says_how_far_it_got() {
        let mut lines = PlainLines::new(Vec::new(), "webhooks.dead");
        lines.finished(&summary(2, 0), false);
        let text = String::from_utf8(lines.into_inner()).unwrap();
        assert_eq!(
            text,
            "replay: stopped: 2 looked at in webhooks.dead, replayed 2, skipped 0\n"
        );
    }
}
