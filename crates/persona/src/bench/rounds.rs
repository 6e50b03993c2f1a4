//! The single-event max-load rounds of `persona bench ingest`, gathered by connection count:
//! each server's median rate, the ratio, CPU time a request and the machine's idle share,
//! and a chart of the rates.

use serde::Serialize;

use super::Phase;
use super::chart::{Level, Series, rate_by_connections};
use super::cpu::{IdleShare, PerRequest};

/// The max-load rounds at one connection count.
#[derive(Debug, Serialize)]
pub(super) struct AtConnections {
    pub connections: usize,
    /// Each server's median rate over the rounds.
    pub noop_requests_per_sec: f64,
    pub persona_requests_per_sec: f64,
    /// The median round's ratio, and each round's.
    pub ratio: f64,
    pub rounds: Vec<f64>,
    /// Each server's CPU time per request over the rounds, by group of threads.
    cpu_per_request: CpuPerRequest,
    /// The share of the machine idle (or waiting for the disk) during each server's rounds.
    machine_idle: MachineIdle,
    /// With `--collector-alone`: persona's collector and event log alone, the same way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collector_alone: Option<AloneAt>,
}

/// The collector and the event log alone at one connection count.
#[derive(Debug, Serialize)]
pub(super) struct AloneAt {
    pub requests_per_sec: f64,
    /// Against the no-op handler's rate in the same round: the median round's, and each.
    pub ratio: f64,
    pub rounds: Vec<f64>,
    cpu_per_request: PerRequest,
    machine_idle: IdleShare,
}

impl std::fmt::Display for AtConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let each: Vec<String> = self.rounds.iter().map(|r| format!("{r:.2}")).collect();
        writeln!(
            f,
            "single-event requests/s at {} connections, persona vs no-op handler: {:.2} (median of rounds: {})",
            self.connections,
            self.ratio,
            each.join(", ")
        )?;
        writeln!(
            f,
            "server CPU per single-event request in these rounds: no-op {}; persona {}",
            self.cpu_per_request.noop, self.cpu_per_request.persona
        )?;
        write!(
            f,
            "machine idle or waiting for the disk in these rounds: no-op {}, persona {}",
            self.machine_idle.noop, self.machine_idle.persona
        )?;
        if let Some(alone) = &self.collector_alone {
            let each: Vec<String> = alone.rounds.iter().map(|r| format!("{r:.2}")).collect();
            write!(
                f,
                "\nsingle-event requests/s at {} connections, collector and log alone vs no-op handler: {:.2} (median of rounds: {}); \
                 its server CPU per request {}, machine idle {}",
                self.connections,
                alone.ratio,
                each.join(", "),
                alone.cpu_per_request,
                alone.machine_idle
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize)]
pub(super) struct CpuPerRequest {
    pub noop: PerRequest,
    pub persona: PerRequest,
}

#[derive(Debug, Default, Serialize)]
pub(super) struct MachineIdle {
    pub noop: IdleShare,
    pub persona: IdleShare,
}

/// One connection count's max-load rounds as they are run. In each round the two servers
/// take turns: this machine's speed drifts by tens of percent within a minute, and a single
/// pair of phases would carry that drift into the ratio. Each round gives a ratio; the
/// median round's is reported.
#[derive(Default)]
pub(super) struct Tally {
    ratios: Vec<f64>,
    noop_rates: Vec<f64>,
    persona_rates: Vec<f64>,
    pub cpu: CpuPerRequest,
    pub idle: MachineIdle,
    pub alone: AloneTally,
}

/// The collector-alone phases of one connection count, each beside the round's no-op one.
#[derive(Default)]
pub(super) struct AloneTally {
    ratios: Vec<f64>,
    rates: Vec<f64>,
    pub cpu: PerRequest,
    pub idle: IdleShare,
}

impl AloneTally {
    pub fn add(&mut self, noop: &Phase, alone: &Phase) {
        self.ratios
            .push(alone.requests_per_sec / noop.requests_per_sec);
        self.rates.push(alone.requests_per_sec);
    }

    fn finish(self) -> Option<AloneAt> {
        (!self.rates.is_empty()).then(|| AloneAt {
            requests_per_sec: median(self.rates),
            ratio: median(self.ratios.clone()),
            rounds: self.ratios,
            cpu_per_request: self.cpu,
            machine_idle: self.idle,
        })
    }
}

impl Tally {
    pub fn add(&mut self, noop: &Phase, persona: &Phase) {
        self.ratios
            .push(persona.requests_per_sec / noop.requests_per_sec);
        self.noop_rates.push(noop.requests_per_sec);
        self.persona_rates.push(persona.requests_per_sec);
    }

    pub fn finish(self, connections: usize) -> AtConnections {
        AtConnections {
            connections,
            noop_requests_per_sec: median(self.noop_rates),
            persona_requests_per_sec: median(self.persona_rates),
            ratio: median(self.ratios.clone()),
            rounds: self.ratios,
            cpu_per_request: self.cpu,
            machine_idle: self.idle,
            collector_alone: self.alone.finish(),
        }
    }
}

/// Each server's median rate by connection count, with the target across: half the no-op
/// handler's best.
pub(super) fn plot(by_connections: &[AtConnections]) -> String {
    let mut sorted: Vec<&AtConnections> = by_connections.iter().collect();
    sorted.sort_by_key(|a| a.connections);
    let series = |name, colour, rate: fn(&AtConnections) -> f64| Series {
        name,
        colour,
        points: sorted.iter().map(|a| (a.connections, rate(a))).collect(),
    };
    let noop_best = sorted
        .iter()
        .map(|a| a.noop_requests_per_sec)
        .fold(0.0, f64::max);
    let mut all = vec![
        series("no-op axum", "#777777", |a| a.noop_requests_per_sec),
        series("persona", "#2563eb", |a| a.persona_requests_per_sec),
    ];
    if sorted.iter().all(|a| a.collector_alone.is_some()) {
        all.push(series("collector and log alone", "#16a34a", |a| {
            a.collector_alone
                .as_ref()
                .map_or(0.0, |c| c.requests_per_sec)
        }));
    }
    rate_by_connections(
        "single-event requests/s at max load (median of rounds)",
        &all,
        Some(Level {
            value: noop_best / 2.0,
            label: "target: ½ no-op's best",
        }),
    )
}

/// The collector-alone median rate at one count (0 when it was not run).
pub(super) fn alone_rate(at: &AtConnections) -> f64 {
    at.collector_alone
        .as_ref()
        .map_or(0.0, |c| c.requests_per_sec)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
