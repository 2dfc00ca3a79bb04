//! Progress reporting as a sink the evaluation loop talks to, so display never leaks into the
//! engine: bars with ETA and images/s on a terminal, plain lines in CI and logs, or nothing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Bars on a terminal, plain lines otherwise.
    Auto,
    Bar,
    Plain,
    /// No progress lines; warnings and notes are still printed.
    None,
}

pub trait Progress: Send + Sync {
    /// Begin a task of `total` images, e.g. one model on one dataset.
    fn start(&self, label: &str, total: u64) -> Box<dyn Task>;
    /// A line for the user (a fallback, a warning), printed without breaking the bars.
    fn message(&self, line: &str);
}

pub trait Task: Send {
    fn inc(&mut self, n: u64);
    fn finish(&mut self, summary: &str);
}

pub fn make(mode: ProgressMode) -> Box<dyn Progress> {
    use std::io::IsTerminal;
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    match mode {
        ProgressMode::Auto if std::io::stderr().is_terminal() && !ci => Box::new(Bars::new()),
        ProgressMode::Bar => Box::new(Bars::new()),
        ProgressMode::Auto | ProgressMode::Plain => Box::new(Plain),
        ProgressMode::None => Box::new(Silent),
    }
}

struct Bars {
    multi: MultiProgress,
}

impl Bars {
    fn new() -> Self {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
        }
    }
}

impl Progress for Bars {
    fn start(&self, label: &str, total: u64) -> Box<dyn Task> {
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:<40!} [{bar:30.cyan/blue}] {pos:>6}/{len:6} {rate:>12} ETA {eta:>4}",
            )
            .expect("static template")
            // indicatif's own {per_sec} prints every digit of the float ("68.09506838793529/s").
            .with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.1} img/s", state.per_sec());
                },
            )
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Box::new(BarTask { bar })
    }

    fn message(&self, line: &str) {
        let _ = self.multi.println(line);
    }
}

struct BarTask {
    bar: ProgressBar,
}

impl Task for BarTask {
    fn inc(&mut self, n: u64) {
        self.bar.inc(n);
    }
    fn finish(&mut self, summary: &str) {
        self.bar.finish_and_clear();
        eprintln!("{summary}");
    }
}

/// One line at start, one every ~10 % or 15 s, one at the end: readable in CI logs.
struct Plain;

impl Progress for Plain {
    fn start(&self, label: &str, total: u64) -> Box<dyn Task> {
        eprintln!("{label}: {total} images");
        Box::new(PlainTask {
            label: label.to_string(),
            total,
            done: 0,
            started: Instant::now(),
            last: Mutex::new((Instant::now(), 0)),
        })
    }
    fn message(&self, line: &str) {
        eprintln!("{line}");
    }
}

struct PlainTask {
    label: String,
    total: u64,
    done: u64,
    started: Instant,
    last: Mutex<(Instant, u64)>,
}

impl Task for PlainTask {
    fn inc(&mut self, n: u64) {
        self.done += n;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let step = (self.total / 10).max(1);
        if self.done < self.total
            && (self.done - last.1 >= step || last.0.elapsed() >= Duration::from_secs(15))
        {
            let secs = self.started.elapsed().as_secs_f64().max(1e-9);
            let rate = self.done as f64 / secs;
            let eta = (self.total - self.done) as f64 / rate.max(1e-9);
            eprintln!(
                "{}: {}/{} ({:.0}%), {:.1} images/s, ETA {:.0}s",
                self.label,
                self.done,
                self.total,
                100.0 * self.done as f64 / self.total.max(1) as f64,
                rate,
                eta
            );
            *last = (Instant::now(), self.done);
        }
    }
    fn finish(&mut self, summary: &str) {
        eprintln!("{summary}");
    }
}

struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: u64) -> Box<dyn Task> {
        Box::new(SilentTask)
    }
    /// Warnings and notes (a provider's fallback, the memory waves) are not progress: they are
    /// printed whatever the display.
    fn message(&self, line: &str) {
        eprintln!("{line}");
    }
}

struct SilentTask;

impl Task for SilentTask {
    fn inc(&mut self, _: u64) {}
    fn finish(&mut self, _: &str) {}
}
