//! The runner end to end with a probe backend: what executes together, in
//! which order, and what callers get back. Ordering is forced with a gate the
//! probe waits on (never with sleeps), so every assertion is deterministic.

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;
use kiln_backend::{Backend, BackendError, BackendRequest, ExecTimings, InFlight, Submitted};
use kiln_model_config::{parse_text, validate, ModelSpec};
use kiln_types::context::{Identity, Protocol};
use kiln_types::tensor::{DataType, Tensor};
use kiln_types::{KilnError, ParamValue, RequestContext, Share};

use super::stats::{ModelStats, RequestTiming, StatsObserver};
use super::ModelRunner;

/// The two gauges the scheduler keeps through its observer.
#[derive(Clone, Default)]
struct Gauges(Arc<(AtomicI64, AtomicI64)>);

impl Gauges {
    /// (pending, executing)
    fn now(&self) -> (i64, i64) {
        (self.0 .0.load(SeqCst), self.0 .1.load(SeqCst))
    }
}

impl StatsObserver for Gauges {
    fn success(&self, _: Option<&str>, _: &RequestTiming) {}
    fn failure(&self, _: Option<&str>) {}
    fn execution(&self, _: u64) {}
    fn pending(&self, delta: i64) {
        self.0 .0.fetch_add(delta, SeqCst);
    }
    fn executing(&self, delta: i64) {
        self.0 .1.fetch_add(delta, SeqCst);
    }
}

/// Closed: the probe's executions wait until it opens.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn closed() -> Self {
        Self::default()
    }
    fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }
    fn pass(&self) {
        let mut open = self.0 .0.lock().unwrap();
        while !*open {
            open = self.0 .1.wait(open).unwrap();
        }
    }
}

/// Echoes input `x` as output `y`; logs the markers (the values of `x`) of
/// each execution; panics on marker -1.
struct Probe {
    gate: Gate,
    /// Executions that have started (reached the gate).
    entered: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Vec<f32>>>>,
}

impl Backend for Probe {
    fn execute(
        &mut self,
        request: &BackendRequest,
        _timings: &mut ExecTimings,
    ) -> Result<Vec<Tensor>, BackendError> {
        self.entered.fetch_add(1, SeqCst);
        self.gate.pass();
        let x = request.inputs[0].as_ref().expect("x is required");
        let markers: Vec<f32> = x
            .data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert!(!markers.contains(&-1.0), "marker -1");
        self.log.lock().unwrap().push(markers);
        let mut y = x.clone();
        y.name = "y".into();
        Ok(vec![y])
    }
    fn device(&self) -> String {
        "cpu".into()
    }
}

fn spec(extra: &str) -> Arc<ModelSpec> {
    let text = format!(
        "backend: \"probe\"\nmax_batch_size: 4\n\
         input [ {{ name: \"x\" data_type: TYPE_FP32 dims: [ -1 ] }} ]\n\
         output [ {{ name: \"y\" data_type: TYPE_FP32 dims: [ -1 ] }} ]\n{extra}"
    );
    let config = parse_text(Path::new("config.pbtxt"), &text).unwrap();
    Arc::new(validate(Path::new("/nonexistent/m"), config).unwrap())
}

struct Harness {
    runner: Arc<ModelRunner>,
    gate: Gate,
    entered: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Vec<f32>>>>,
    gauges: Gauges,
}

fn start(extra: &str, instances: usize) -> Harness {
    let gate = Gate::closed();
    let log = Arc::new(Mutex::new(Vec::new()));
    let entered = Arc::new(AtomicUsize::new(0));
    let backends: Vec<Box<dyn Backend>> = (0..instances)
        .map(|_| {
            Box::new(Probe {
                gate: gate.clone(),
                entered: entered.clone(),
                log: log.clone(),
            }) as Box<dyn Backend>
        })
        .collect();
    let gauges = Gauges::default();
    let runner =
        ModelRunner::start(spec(extra), 1, backends, ModelStats::new(gauges.clone())).unwrap();
    Harness {
        runner,
        gate,
        entered,
        log,
        gauges,
    }
}

/// One request of one row, `[[marker; width]]`.
fn request(marker: f32, width: usize, parameters: &[(&str, ParamValue)]) -> BackendRequest {
    let data: Vec<u8> = std::iter::repeat_n(marker.to_le_bytes(), width)
        .flatten()
        .collect();
    BackendRequest {
        inputs: vec![Some(Tensor::new(
            "x",
            DataType::Fp32,
            vec![1, width as i64],
            Bytes::from(data),
        ))],
        parameters: parameters
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

/// Waits for `condition`; a test that would wait for ever fails instead
/// (a wrong expectation must not hang the suite).
async fn until(condition: impl Fn() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "30 s without {what}");
        tokio::task::yield_now().await;
    }
}

fn ctx() -> RequestContext {
    RequestContext::internal()
}

/// A request of tenant `name`.
fn tenant(name: &str, weight: u32, max_queued_per_model: Option<u32>) -> RequestContext {
    let mut ctx = RequestContext::new(Protocol::Internal, Identity::Tenant(name.into()));
    ctx.share = Share {
        weight,
        max_queued_per_model,
    };
    ctx
}

impl Harness {
    /// Queues a request on the runtime; returns its answer's handle.
    fn submit(
        &self,
        marker: f32,
        width: usize,
        parameters: &[(&str, ParamValue)],
    ) -> tokio::task::JoinHandle<Result<Vec<Tensor>, KilnError>> {
        self.submit_as(ctx(), marker, width, parameters)
    }

    /// [`Self::submit`] for the caller `ctx`.
    fn submit_as(
        &self,
        ctx: RequestContext,
        marker: f32,
        width: usize,
        parameters: &[(&str, ParamValue)],
    ) -> tokio::task::JoinHandle<Result<Vec<Tensor>, KilnError>> {
        let runner = self.runner.clone();
        let request = request(marker, width, parameters);
        tokio::spawn(async move { runner.execute(&ctx, request).await.map(|o| o.outputs) })
    }

    /// Waits until `n` requests are queued (the gate keeps them there).
    async fn until_queued(&self, n: usize) {
        until(
            || self.runner.shared.queue.waiting() >= n,
            "requests queued",
        )
        .await;
    }

    /// Waits until the one pending request has left the queue for a batch
    /// that is not executing yet: an instance is gathering company for it.
    async fn until_gathering(&self) {
        until(
            || self.gauges.now().0 == 1 && self.runner.shared.queue.waiting() == 0,
            "an instance to take the request and wait for company",
        )
        .await;
    }

    /// Waits until `n` executions have started (held at the gate).
    async fn until_executing(&self, n: usize) {
        until(|| self.entered.load(SeqCst) >= n, "executions started").await;
    }

    fn executions(&self) -> Vec<Vec<f32>> {
        self.log.lock().unwrap().clone()
    }

    /// [`Self::executions`], each batch's markers in order: requests
    /// submitted together (each its own task) may queue in any order.
    fn sorted_executions(&self) -> Vec<Vec<f32>> {
        let mut executions = self.executions();
        for e in &mut executions {
            e.sort_by(f32::total_cmp);
        }
        executions
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compatible_requests_execute_as_one_batch_and_each_caller_gets_its_rows() {
    // A long delay: the batch goes when full (max_batch_size 4), not on time
    // (Triton's wait: an idle instance would otherwise take the first alone).
    let h = start(
        "dynamic_batching { max_queue_delay_microseconds: 60000000 }\n\
         parameters { key: \"dispatch_when_idle\" value { string_value: \"false\" } }",
        1,
    );
    let answers: Vec<_> = (1..=4).map(|m| h.submit(m as f32, 3, &[])).collect();
    h.gate.open();
    for (m, answer) in (1..=4).zip(answers) {
        let outputs = answer.await.unwrap().unwrap();
        assert_eq!(outputs[0].shape, vec![1, 3]);
        assert_eq!(
            outputs[0].data,
            Bytes::from((m as f32).to_le_bytes().repeat(3))
        );
    }
    let executions = h.executions();
    assert_eq!(executions.len(), 1, "{executions:?}");
    let mut markers = executions[0].clone();
    markers.dedup();
    markers.sort_by(f32::total_cmp);
    assert_eq!(markers, vec![1.0, 2.0, 3.0, 4.0]);
    let stats = h.runner.stats.snapshot();
    assert_eq!((stats.execution_count, stats.inference_count), (1, 4));
    assert_eq!(stats.batches[0].batch_size, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_of_other_shapes_or_parameters_never_share_an_execution() {
    let h = start("dynamic_batching { max_queue_delay_microseconds: 1000 }", 1);
    let blocker = h.submit(0.0, 1, &[]);
    h.until_executing(1).await;
    let answers = vec![
        h.submit(1.0, 2, &[]),
        h.submit(2.0, 3, &[]),
        h.submit(3.0, 2, &[("k", ParamValue::Bool(true))]),
        h.submit(4.0, 2, &[]),
    ];
    h.until_queued(4).await;
    h.gate.open();
    blocker.await.unwrap().unwrap();
    for a in answers {
        a.await.unwrap().unwrap();
    }
    for execution in h.executions() {
        let mut markers = execution.clone();
        markers.dedup();
        // 1 and 4 may share (same shape, no parameters); nothing else may.
        assert!(
            markers.len() == 1 || markers == [1.0, 4.0] || markers == [4.0, 1.0],
            "{execution:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_requests_run_first() {
    let h = start(
        "dynamic_batching { priority_levels: 2 default_priority_level: 2 }",
        1,
    );
    let blocker = h.submit(0.0, 1, &[]);
    h.until_executing(1).await;
    let low = h.submit(2.0, 1, &[]);
    h.until_queued(1).await;
    let high = h.submit(1.0, 1, &[("priority", ParamValue::Int(1))]);
    h.until_queued(2).await;
    h.gate.open();
    for a in [blocker, low, high] {
        a.await.unwrap().unwrap();
    }
    let order: Vec<f32> = h.executions().into_iter().flatten().collect();
    assert_eq!(order, vec![0.0, 1.0, 2.0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priority_beyond_the_levels_is_invalid() {
    let h = start("dynamic_batching { priority_levels: 2 }", 1);
    h.gate.open();
    let e = h
        .submit(1.0, 1, &[("priority", ParamValue::Int(3))])
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, KilnError::InvalidArgument(_)), "{e:?}");
    assert!(e.message().contains("2 priority level(s)"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_with_unavailable() {
    let h = start(
        "dynamic_batching { default_queue_policy { max_queue_size: 1 } }",
        1,
    );
    let blocker = h.submit(0.0, 1, &[]);
    h.until_executing(1).await;
    let queued = h.submit(1.0, 1, &[]);
    h.until_queued(1).await;
    let e = h.submit(2.0, 1, &[]).await.unwrap().unwrap_err();
    assert!(matches!(e, KilnError::Unavailable(_)), "{e:?}");
    assert!(e.message().contains("maximum queue size of 1"), "{e}");
    h.gate.open();
    blocker.await.unwrap().unwrap();
    queued.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_still_queued_at_its_timeout_is_rejected() {
    let h = start(
        "dynamic_batching { default_queue_policy { timeout_action: REJECT default_timeout_microseconds: 1000 allow_timeout_override: true } }",
        1,
    );
    // The blocker may wait longer than 1 ms for the instance on a loaded
    // machine: its own timeout is a minute (a CI run once hung on it).
    let blocker = h.submit(0.0, 1, &[("timeout", ParamValue::Int(60_000_000))]);
    h.until_executing(1).await;
    let late = h.submit(1.0, 1, &[]);
    h.until_queued(1).await;
    // The timeout is 1 ms; the request stays queued (the gate holds the only
    // instance) for at least 20 ms.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    h.gate.open();
    blocker.await.unwrap().unwrap();
    let e = late.await.unwrap().unwrap_err();
    assert!(e.message().contains("request timeout expired"), "{e}");
    assert_eq!(h.executions(), vec![vec![0.0]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_backend_fails_that_execution_only() {
    let h = start("", 1);
    h.gate.open();
    let e = h.submit(-1.0, 1, &[]).await.unwrap().unwrap_err();
    assert!(matches!(e, KilnError::Internal(_)), "{e:?}");
    assert!(e.message().contains("backend panicked"), "{e}");
    h.submit(1.0, 1, &[]).await.unwrap().unwrap();
    let stats = h.runner.stats.snapshot();
    assert_eq!(stats.execution_count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_finishes_every_queued_request() {
    let h = start("", 2);
    let answers: Vec<_> = (0..6).map(|m| h.submit(m as f32, 1, &[])).collect();
    h.until_executing(2).await;
    h.until_queued(4).await;
    h.gate.open();
    let runner = h.runner.clone();
    tokio::task::spawn_blocking(move || runner.stop())
        .await
        .unwrap();
    for a in answers {
        a.await.unwrap().unwrap();
    }
    assert_eq!(h.executions().len(), 6);
    let e = h.submit(9.0, 1, &[]).await.unwrap().unwrap_err();
    assert!(e.message().contains("is unloading"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gauges_count_waiting_and_executing_requests() {
    let h = start(
        "dynamic_batching { default_queue_policy { max_queue_size: 2 timeout_action: REJECT default_timeout_microseconds: 60000000 allow_timeout_override: true } }",
        1,
    );
    let blocker = h.submit(0.0, 1, &[]);
    h.until_executing(1).await;
    assert_eq!(h.gauges.now(), (0, 1));
    let waiting = h.submit(1.0, 1, &[]);
    let expires = h.submit(2.0, 1, &[("timeout", ParamValue::Int(1000))]);
    h.until_queued(2).await;
    assert_eq!(h.gauges.now(), (2, 1));
    // Refused by the full queue: never counted.
    h.submit(3.0, 1, &[]).await.unwrap().unwrap_err();
    assert_eq!(h.gauges.now(), (2, 1));
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    h.gate.open();
    blocker.await.unwrap().unwrap();
    waiting.await.unwrap().unwrap();
    let e = expires.await.unwrap().unwrap_err();
    assert!(e.message().contains("request timeout expired"), "{e}");
    // Counted out before the answer went.
    assert_eq!(h.gauges.now(), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_take_turns_within_and_across_batches() {
    let h = start("dynamic_batching { max_queue_delay_microseconds: 1000 }", 1);
    let blocker = h.submit(0.0, 1, &[]);
    h.until_executing(1).await;
    // Tenant a floods first; b's two requests arrive behind all eight.
    let mut answers = Vec::new();
    for (i, m) in (10..18).enumerate() {
        answers.push(h.submit_as(tenant("a", 1, None), m as f32, 1, &[]));
        h.until_queued(i + 1).await;
    }
    for (i, m) in [20, 21].into_iter().enumerate() {
        answers.push(h.submit_as(tenant("b", 1, None), m as f32, 1, &[]));
        h.until_queued(9 + i).await;
    }
    h.gate.open();
    blocker.await.unwrap().unwrap();
    for a in answers {
        a.await.unwrap().unwrap();
    }
    // Turns of one item each: b's requests alternate with a's in the very
    // next batch instead of waiting behind all of a's.
    assert_eq!(
        h.executions(),
        vec![
            vec![0.0],
            vec![10.0, 20.0, 11.0, 21.0],
            vec![12.0, 13.0, 14.0, 15.0],
            vec![16.0, 17.0],
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_queued_quota_is_refused_and_others_are_not() {
    let h = start("", 1);
    let blocker = h.submit(0.0, 1, &[]);
    h.until_executing(1).await;
    let queued: Vec<_> = (1..=2)
        .map(|m| h.submit_as(tenant("a", 1, Some(2)), m as f32, 1, &[]))
        .collect();
    h.until_queued(2).await;
    let e = h
        .submit_as(tenant("a", 1, Some(2)), 3.0, 1, &[])
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, KilnError::ResourceExhausted(_)), "{e:?}");
    assert!(e.message().contains("tenant 'a'"), "{e}");
    assert!(e.message().contains("max_queued_per_model"), "{e}");
    let other = h.submit_as(tenant("b", 1, Some(2)), 4.0, 1, &[]);
    h.until_queued(3).await;
    h.gate.open();
    for a in queued.into_iter().chain([blocker, other]) {
        a.await.unwrap().unwrap();
    }
    assert_eq!(h.executions().len(), 4);
}

/// A delay no test waits out: a request that waited for it would hang the
/// test until `until`'s 30 s.
const A_MINUTE: &str = "dynamic_batching { max_queue_delay_microseconds: 60000000 }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_model_runs_a_lone_request_at_once() {
    let h = start(A_MINUTE, 1);
    h.gate.open();
    let answer = h.submit(7.0, 2, &[]);
    until(|| answer.is_finished(), "the lone request's answer").await;
    answer.await.unwrap().unwrap();
    assert_eq!(h.executions(), vec![vec![7.0, 7.0]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_queued_behind_a_busy_instance_go_together_once_it_is_free() {
    let h = start(A_MINUTE, 1);
    let blocker = h.submit(0.0, 1, &[]);
    h.until_executing(1).await;
    let answers: Vec<_> = (1..=3).map(|m| h.submit(m as f32, 1, &[])).collect();
    h.until_queued(3).await;
    h.gate.open();
    blocker.await.unwrap().unwrap();
    // Three of a possible four: the instance is idle, so the batch does
    // not wait a minute for the fourth.
    for a in answers {
        a.await.unwrap().unwrap();
    }
    assert_eq!(h.sorted_executions(), vec![vec![0.0], vec![1.0, 2.0, 3.0]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_one_of_two_instances_executes_the_other_takes_a_request_at_once() {
    let h = start(A_MINUTE, 2);
    let blocker = h.submit(0.0, 1, &[]);
    h.until_executing(1).await;
    // The second instance is idle: request 1 goes at once, alone, instead
    // of waiting a minute for company.
    let first = h.submit(1.0, 1, &[]);
    h.until_executing(2).await;
    // Both busy: 2..4 queue, and go together once one is free.
    let rest: Vec<_> = (2..=4).map(|m| h.submit(m as f32, 1, &[])).collect();
    h.until_queued(3).await;
    h.gate.open();
    blocker.await.unwrap().unwrap();
    first.await.unwrap().unwrap();
    for a in rest {
        a.await.unwrap().unwrap();
    }
    // Both instances pass the gate together: their log order is either.
    let mut executions = h.sorted_executions();
    executions.sort_by(|a, b| a[0].total_cmp(&b[0]));
    assert_eq!(executions, vec![vec![0.0], vec![1.0], vec![2.0, 3.0, 4.0]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_every_instance_is_busy_a_batch_fills_and_goes_when_one_is_free() {
    let gate = Gate::closed();
    let probe = DeviceProbe::new(&gate);
    let gauges = Gauges::default();
    let h = Harness {
        entered: probe.entered.clone(),
        log: probe.log.clone(),
        gate,
        gauges: gauges.clone(),
        runner: ModelRunner::start(
            spec(A_MINUTE),
            1,
            vec![Box::new(probe)],
            ModelStats::new(gauges),
        )
        .unwrap(),
    };
    let first = h.submit(1.0, 1, &[]);
    h.until_executing(1).await;
    // Batch 1 is in flight (held at the gate): the instance gathers 2 and
    // waits for company, and 3 joins it.
    let second = h.submit(2.0, 1, &[]);
    h.until_gathering().await;
    let third = h.submit(3.0, 1, &[]);
    until(
        || h.gauges.now().0 == 2 && h.runner.shared.queue.waiting() == 0,
        "the gatherer to take request 3 too",
    )
    .await;
    // Batch 1 finishes: the instance is idle, so 2 and 3 go now rather
    // than at the end of the minute.
    h.gate.open();
    for a in [first, second, third] {
        a.await.unwrap().unwrap();
    }
    assert_eq!(h.sorted_executions(), vec![vec![1.0], vec![2.0, 3.0]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_dispatch_when_idle_false_an_idle_model_still_waits_for_company() {
    let h = start(
        &format!(
            "{A_MINUTE}\nparameters {{ key: \"dispatch_when_idle\" value {{ string_value: \"false\" }} }}"
        ),
        1,
    );
    h.gate.open();
    let first = h.submit(1.0, 1, &[]);
    h.until_gathering().await;
    let rest: Vec<_> = (2..=4).map(|m| h.submit(m as f32, 1, &[])).collect();
    first.await.unwrap().unwrap();
    for a in rest {
        a.await.unwrap().unwrap();
    }
    assert_eq!(h.executions().len(), 1, "{:?}", h.executions());
}

/// Like [`Probe`], but leaves each execution in flight, as a GPU backend
/// does: `submit` logs the batch and returns; its `finish` waits at the gate.
struct DeviceProbe {
    gate: Gate,
    /// Executions submitted (`entered`) and finished.
    entered: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
    /// The most executions ever submitted and not finished at once.
    most_in_flight: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Vec<f32>>>>,
}

impl DeviceProbe {
    fn new(gate: &Gate) -> Self {
        Self {
            gate: gate.clone(),
            entered: Arc::new(AtomicUsize::new(0)),
            finished: Arc::new(AtomicUsize::new(0)),
            most_in_flight: Arc::new(AtomicUsize::new(0)),
            log: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

struct ProbeWork {
    gate: Gate,
    finished: Arc<AtomicUsize>,
    outputs: Vec<Tensor>,
}

impl InFlight for ProbeWork {
    fn finish(self: Box<Self>, _: &mut ExecTimings) -> Result<Vec<Tensor>, BackendError> {
        self.gate.pass();
        self.finished.fetch_add(1, SeqCst);
        Ok(self.outputs)
    }
}

impl Backend for DeviceProbe {
    fn execute(
        &mut self,
        request: &BackendRequest,
        timings: &mut ExecTimings,
    ) -> Result<Vec<Tensor>, BackendError> {
        self.submit(&[request], timings)?.finish(timings)
    }
    fn submit(
        &mut self,
        requests: &[&BackendRequest],
        _: &mut ExecTimings,
    ) -> Result<Submitted, BackendError> {
        let in_flight = self.entered.fetch_add(1, SeqCst) + 1 - self.finished.load(SeqCst);
        self.most_in_flight.fetch_max(in_flight, SeqCst);
        let merged = kiln_backend::batch::merge(requests);
        let x = merged.inputs[0].clone().expect("x is required");
        self.log.lock().unwrap().push(
            x.data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        );
        let mut y = x;
        y.name = "y".into();
        Ok(Submitted::InFlight(Box::new(ProbeWork {
            gate: self.gate.clone(),
            finished: self.finished.clone(),
            outputs: vec![y],
        })))
    }
    fn device(&self) -> String {
        "probe-device".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_batch_is_launched_while_one_is_in_flight_and_at_most_two_are() {
    let gate = Gate::closed();
    let probe = DeviceProbe::new(&gate);
    let (finished, most_in_flight) = (probe.finished.clone(), probe.most_in_flight.clone());
    let h = Harness {
        entered: probe.entered.clone(),
        log: probe.log.clone(),
        gate,
        gauges: Gauges::default(),
        runner: ModelRunner::start(
            spec("dynamic_batching { max_queue_delay_microseconds: 1000 }"),
            1,
            vec![Box::new(probe)],
            ModelStats::new(Gauges::default()),
        )
        .unwrap(),
    };
    let first = h.submit(1.0, 1, &[]);
    h.until_executing(1).await;
    // Batch 1 waits at the gate in flight; the instance launches batch 2
    // beside it.
    let second = h.submit(2.0, 1, &[]);
    h.until_executing(2).await;
    assert_eq!(finished.load(SeqCst), 0);
    let rest: Vec<_> = (3..=9).map(|m| h.submit(m as f32, 1, &[])).collect();
    h.until_queued(7).await;
    h.gate.open();
    for (m, a) in (1..=9).zip([first, second].into_iter().chain(rest)) {
        let outputs = a.await.unwrap().unwrap();
        assert_eq!(
            outputs[0].data,
            Bytes::from((m as f32).to_le_bytes().to_vec())
        );
    }
    // 3..=9 queued in any order (each its own task): a full batch, then the rest.
    let executions = h.sorted_executions();
    let sizes: Vec<usize> = executions.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![1, 1, 4, 3], "{executions:?}");
    assert_eq!((executions[0][0], executions[1][0]), (1.0, 2.0));
    assert_eq!(most_in_flight.load(SeqCst), 2);
    let stats = h.runner.stats.snapshot();
    assert_eq!((stats.execution_count, stats.inference_count), (4, 9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_answers_the_batches_in_flight_first() {
    let gate = Gate::closed();
    let probe = DeviceProbe::new(&gate);
    let entered = probe.entered.clone();
    let runner = ModelRunner::start(
        spec(""),
        1,
        vec![Box::new(probe)],
        ModelStats::new(Gauges::default()),
    )
    .unwrap();
    let answers: Vec<_> = (0..2)
        .map(|m| {
            let runner = runner.clone();
            tokio::spawn(async move { runner.execute(&ctx(), request(m as f32, 1, &[])).await })
        })
        .collect();
    until(|| entered.load(SeqCst) == 2, "two executions in flight").await;
    let stopping = {
        let runner = runner.clone();
        tokio::task::spawn_blocking(move || runner.stop())
    };
    gate.open();
    stopping.await.unwrap();
    for a in answers {
        a.await.unwrap().unwrap();
    }
}
