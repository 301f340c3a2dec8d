//! The trace settings in force (the server's and each model's) and the
//! sampling decision: which requests are traced, by Triton's rules.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use kiln_types::RequestContext;
use parking_lot::{Mutex, RwLock};

use crate::clock::{new_span_id, new_trace_id, Clock};
use crate::config::TraceConfig;
use crate::file::{TraceFiles, TraceStream};
use crate::otlp::OtlpExporter;
use crate::record::{ModelRecord, RequestTrace, Shared, Sink};
use crate::settings::{report, Mode, Overrides, Update, UpdateError, Values};

/// Where finished traces go.
pub(crate) enum Exporter {
    Files(TraceFiles),
    Otlp(OtlpExporter),
}

/// Triton's sampling state of one settings scope.
#[derive(Debug)]
struct Sampler {
    /// Requests seen (the rate counts every one).
    seen: u64,
    /// Traces still to take; -1: no limit.
    count: i32,
}

/// One scope's settings in force and its sampling state. Replaced, not
/// changed, by an update (as in Triton: the counters start again), so a
/// trace in flight finishes under the settings it was sampled with.
pub(crate) struct Scope {
    pub values: Values,
    pub mode: Mode,
    sampler: Mutex<Sampler>,
    pub clock: Clock,
    exporter: Arc<Exporter>,
    /// Triton mode: traces waiting for the file.
    stream: Option<TraceStream>,
    ids: Arc<AtomicU64>,
}

impl Scope {
    fn new(values: Values, parts: &Parts) -> Arc<Self> {
        let stream = match (&*parts.exporter, values.invalid_reason(parts.mode)) {
            (Exporter::Files(files), None) => Some(files.stream(&values)),
            _ => None,
        };
        Arc::new(Self {
            sampler: Mutex::new(Sampler {
                seen: 0,
                count: values.count,
            }),
            values,
            mode: parts.mode,
            clock: parts.clock,
            exporter: parts.exporter.clone(),
            stream,
            ids: parts.ids.clone(),
        })
    }

    /// Triton's rule: one request of every `rate` while `count` lasts; a
    /// request that `forced` it (a caller's trace context in OpenTelemetry
    /// mode) regardless.
    fn sample(&self, forced: bool) -> bool {
        if self.values.level.is_off() {
            return false;
        }
        // Rate 0 (Triton's way of tracing just the callers that sent a trace
        // context) or settings that cannot trace: only forced requests.
        if self.values.invalid_reason(self.mode).is_some() {
            return forced;
        }
        let mut s = self.sampler.lock();
        if s.count == 0 {
            return forced;
        }
        s.seen += 1;
        let hit = s.seen.is_multiple_of(u64::from(self.values.rate));
        if hit && s.count > 0 {
            s.count -= 1;
        }
        hit || forced
    }

    /// Whether every trace this scope will ever take has been taken.
    pub fn exhausted(&self) -> bool {
        self.sampler.lock().count == 0
    }
}

impl Sink for Scope {
    fn level(&self) -> crate::settings::Level {
        self.values.level
    }

    fn next_trace_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    fn export(&self, request: &Shared, records: Vec<ModelRecord>, end: Instant) {
        match &*self.exporter {
            Exporter::Files(_) => {
                if let Some(stream) = &self.stream {
                    stream.push(
                        &self.clock,
                        &self.values,
                        request,
                        &records,
                        self.exhausted(),
                    );
                }
            }
            Exporter::Otlp(otlp) => otlp.export(&self.clock, request, &records, end),
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some(stream) = &self.stream {
            stream.flush_rest(&self.values);
        }
    }
}

/// The trace settings in force and the exporter: Triton's trace manager.
pub struct TraceManager {
    parts: Parts,
    /// The server's settings and their scope.
    global: RwLock<Arc<Scope>>,
    /// Models with settings of their own: their overrides and scope.
    models: RwLock<HashMap<String, (Overrides, Arc<Scope>)>>,
    /// Some scope traces at all: the only thing a request reads when
    /// tracing is off.
    enabled: AtomicBool,
}

/// What every scope of a manager shares.
struct Parts {
    mode: Mode,
    clock: Clock,
    exporter: Arc<Exporter>,
    /// Triton's trace ids, one per model execution.
    ids: Arc<AtomicU64>,
}

impl TraceManager {
    /// Settings from `--trace-config`; in OpenTelemetry mode the OTLP
    /// exporter starts here (its batches go out on its own thread).
    pub fn new(config: &TraceConfig) -> Result<Arc<Self>, String> {
        let exporter = match config.mode {
            Mode::Triton => Exporter::Files(TraceFiles::default()),
            Mode::OpenTelemetry => Exporter::Otlp(OtlpExporter::start(&config.otlp)?),
        };
        if config.mode == Mode::OpenTelemetry
            && config
                .values
                .level
                .contains(crate::settings::Level::TENSORS)
        {
            tracing::warn!("trace level TENSORS is recorded only in Triton mode's trace files, not in OpenTelemetry spans");
        }
        let parts = Parts {
            mode: config.mode,
            clock: Clock::now(),
            exporter: Arc::new(exporter),
            ids: Arc::new(AtomicU64::new(1)),
        };
        let manager = Self {
            global: RwLock::new(Scope::new(config.values.clone(), &parts)),
            parts,
            models: RwLock::new(HashMap::new()),
            enabled: AtomicBool::new(false),
        };
        manager.refresh_enabled();
        Ok(Arc::new(manager))
    }

    /// Tracing off, Triton's defaults (what a server without
    /// `--trace-config` starts with).
    pub fn off() -> Arc<Self> {
        Self::new(&TraceConfig::default()).expect("Triton mode starts no exporter")
    }

    pub fn mode(&self) -> Mode {
        self.parts.mode
    }

    /// Whether to trace a request for `model` (the name the caller used);
    /// `None` for nearly every request. Tracing off costs one atomic load.
    pub fn sample(&self, model: &str, ctx: &RequestContext) -> Option<RequestTrace> {
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        let scope = self.scope(model);
        // As Triton: a caller's trace context counts in OpenTelemetry mode
        // only, and then traces the request whatever the rate and count.
        let remote = match self.parts.mode {
            Mode::OpenTelemetry => ctx.trace_parent.clone(),
            Mode::Triton => None,
        };
        if !scope.sample(remote.is_some()) {
            return None;
        }
        Some(RequestTrace::new(Shared {
            trace_id: remote.as_ref().map_or_else(new_trace_id, |r| r.trace_id),
            root_span: new_span_id(),
            remote,
            protocol: ctx.protocol,
            tenant: ctx.tenant().cloned(),
            received_at: ctx.received_at,
            admitted_at: ctx.admitted_at,
            records: Mutex::new(Vec::new()),
            sink: scope,
        }))
    }

    fn scope(&self, model: &str) -> Arc<Scope> {
        if let Some((_, scope)) = self.models.read().get(model) {
            return scope.clone();
        }
        self.global.read().clone()
    }

    /// The settings of `model` (its own over the server's), or the server's.
    pub fn settings(&self, model: Option<&str>) -> Vec<(&'static str, Vec<String>)> {
        let scope = match model {
            Some(m) => self.scope(m),
            None => self.global.read().clone(),
        };
        report(&scope.values, self.parts.mode)
    }

    /// Applies an update to the server's settings or to `model`'s. As in
    /// Triton, settings that could not trace are refused unless they turn
    /// tracing off, and a model left with no settings of its own follows
    /// the server's again.
    pub fn update(&self, model: Option<&str>, update: &Update) -> Result<(), UpdateError> {
        let base = self.global.read().values.clone();
        let check = |values: &Values| match values.invalid_reason(self.parts.mode) {
            Some(reason) if !values.level.is_off() => Err(UpdateError::Invalid(format!(
                "Attempting to set invalid trace setting: {reason}"
            ))),
            _ => Ok(()),
        };
        match model {
            None => {
                // A cleared server setting goes back to its default.
                let values = Overrides::from_values(&base).updated(update).over(&Values {
                    file: base.file.clone(),
                    ..Values::default()
                });
                check(&values)?;
                *self.global.write() = Scope::new(values.clone(), &self.parts);
                // Models follow the server's new values where they have none.
                let mut models = self.models.write();
                for (overrides, scope) in models.values_mut() {
                    let mine = overrides.over(&values);
                    if mine != scope.values {
                        *scope = Scope::new(mine, &self.parts);
                    }
                }
            }
            Some(name) => {
                let mut models = self.models.write();
                let current = models.get(name).map(|(o, _)| o.clone()).unwrap_or_default();
                let overrides = current.updated(update);
                if overrides.is_empty() {
                    models.remove(name);
                } else {
                    let values = overrides.over(&base);
                    check(&values)?;
                    let scope = Scope::new(values, &self.parts);
                    models.insert(name.to_string(), (overrides, scope));
                }
            }
        }
        self.refresh_enabled();
        Ok(())
    }

    fn refresh_enabled(&self) {
        let on = !self.global.read().values.level.is_off()
            || self
                .models
                .read()
                .values()
                .any(|(_, s)| !s.values.level.is_off());
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// At exit: traces waiting for their file are written, OTLP batches
    /// sent (bounded by the exporter's own timeout).
    pub fn shutdown(&self) {
        self.enabled.store(false, Ordering::Relaxed);
        if let Some(stream) = &self.global.read().stream {
            stream.flush_rest(&self.global.read().values);
        }
        for (_, scope) in self.models.read().values() {
            if let Some(stream) = &scope.stream {
                stream.flush_rest(&scope.values);
            }
        }
        if let Exporter::Otlp(otlp) = &*self.parts.exporter {
            otlp.shutdown();
        }
    }
}

impl Overrides {
    /// Every field specified: the server's settings as the base of an update.
    fn from_values(values: &Values) -> Overrides {
        Overrides {
            level: Some(values.level),
            rate: Some(values.rate),
            count: Some(values.count),
            log_frequency: Some(values.log_frequency),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Change, Level};
    use kiln_types::context::{Identity, Protocol};

    fn ctx() -> RequestContext {
        RequestContext::new(Protocol::Http, Identity::Anonymous)
    }

    fn manager(entries: &[String]) -> Arc<TraceManager> {
        TraceManager::new(&TraceConfig::parse(entries).unwrap()).unwrap()
    }

    fn file_config(dir: &std::path::Path, more: &[&str]) -> Vec<String> {
        let mut v = vec![format!("triton,file={}", dir.join("trace.json").display())];
        v.extend(more.iter().map(|s| s.to_string()));
        v
    }

    /// Runs `n` requests for `model`, each one model execution; how many
    /// were traced.
    fn run(m: &TraceManager, model: &str, n: usize) -> usize {
        (0..n)
            .filter(|_| match m.sample(model, &ctx()) {
                Some(trace) => {
                    let mut t = trace.start_model();
                    t.queue_started();
                    t.finish(model, "1", "req", "pytorch", None);
                    true
                }
                None => false,
            })
            .count()
    }

    #[test]
    fn rate_and_count_follow_triton() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(run(&TraceManager::off(), "m", 100), 0);
        let m = manager(&file_config(dir.path(), &["level=TIMESTAMPS", "rate=3"]));
        assert_eq!(run(&m, "m", 9), 3);
        let m = manager(&file_config(
            dir.path(),
            &["level=TIMESTAMPS", "rate=1", "count=4"],
        ));
        assert_eq!(run(&m, "m", 10), 4);
        assert_eq!(m.settings(None)[2], ("trace_count", vec!["4".to_string()]));
        // No file in Triton mode: nothing to write to, nothing traced.
        let m = manager(&["level=TIMESTAMPS".into(), "rate=1".into()]);
        assert_eq!(run(&m, "m", 5), 0);
    }

    #[test]
    fn model_settings_override_and_clear_back_to_global() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(&file_config(dir.path(), &["rate=1"]));
        assert_eq!(run(&m, "a", 5), 0);
        let on = Update {
            level: Change::Set(Level::TIMESTAMPS),
            ..Default::default()
        };
        m.update(Some("a"), &on).unwrap();
        assert_eq!(run(&m, "a", 5), 5);
        assert_eq!(run(&m, "b", 5), 0, "other models follow the global OFF");
        assert_eq!(m.settings(Some("a"))[0].1, ["TIMESTAMPS"]);
        assert_eq!(m.settings(Some("b"))[0].1, ["OFF"]);
        // A global change reaches the fields the model did not set.
        m.update(
            None,
            &Update {
                rate: Change::Set(5),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(m.settings(Some("a"))[1].1, ["5"]);
        m.update(
            Some("a"),
            &Update {
                level: Change::Clear,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(run(&m, "a", 5), 0);
        // Settings that cannot trace are refused unless they turn it off.
        let no_file = manager(&[]);
        let e = no_file.update(None, &on).unwrap_err();
        assert!(
            e.to_string().contains("trace file name is not given"),
            "{e}"
        );
    }

    #[test]
    fn traces_are_written_in_tritons_format() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(&file_config(
            dir.path(),
            &["level=TIMESTAMPS", "rate=1", "triton,log-frequency=2"],
        ));
        // An ensemble with one step: two records, the step's parent the ensemble.
        for _ in 0..2 {
            let trace = m.sample("ens", &ctx()).unwrap();
            let ens = trace.start_model();
            let mut step = ens.step().start_model();
            step.queue_started();
            step.compute(crate::record::ComputeTimes::from_durations(
                Instant::now(),
                std::time::Duration::from_micros(10),
                std::time::Duration::from_micros(20),
                std::time::Duration::from_micros(5),
            ));
            step.finish("m", "1", "r1", "pytorch", None);
            ens.finish("ens", "1", "r1", "ensemble", None);
        }
        let text = std::fs::read_to_string(dir.path().join("trace.json.0")).unwrap();
        let entries: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        let heads: Vec<_> = entries
            .iter()
            .filter(|e| e.get("model_name").is_some())
            .collect();
        assert_eq!(heads.len(), 4);
        let step = heads.iter().find(|e| e["model_name"] == "m").unwrap();
        let ens = heads.iter().find(|e| e["model_name"] == "ens").unwrap();
        assert_eq!(step["parent_id"], ens["id"]);
        assert_eq!(step["model_version"], 1);
        let names: Vec<_> = entries
            .iter()
            .filter(|e| e["id"] == step["id"])
            .filter_map(|e| e.get("timestamps"))
            .map(|t| t[0]["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "REQUEST_START",
                "QUEUE_START",
                "COMPUTE_START",
                "COMPUTE_INPUT_END",
                "COMPUTE_OUTPUT_START",
                "COMPUTE_END",
                "REQUEST_END"
            ]
        );
        // At exit what is left goes to the next indexed file.
        run(&m, "x", 1);
        m.shutdown();
        assert!(dir.path().join("trace.json.1").exists());
    }

    #[test]
    fn the_unindexed_file_keeps_traces_from_before_an_update() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(&file_config(dir.path(), &["level=TIMESTAMPS", "rate=1"]));
        assert_eq!(run(&m, "a", 2), 2);
        // The update replaces the scope: its two traces go to the file...
        m.update(
            None,
            &Update {
                rate: Change::Set(1),
                count: Change::Set(5),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(run(&m, "b", 3), 3);
        // ... and stay there when the new scope writes its three at exit.
        m.shutdown();
        drop(m);
        let text = std::fs::read_to_string(dir.path().join("trace.json")).unwrap();
        let entries: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        let models: Vec<_> = entries.iter().filter_map(|e| e.get("model_name")).collect();
        assert_eq!(models.len(), 5, "{models:?}");
    }
}
