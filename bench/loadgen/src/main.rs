//! A closed-loop load generator for KServe v2 over gRPC: N concurrent callers,
//! each on its own HTTP/2 connection (as perf_analyzer's synchronous mode),
//! each sending the next request as soon as the previous answer arrives.
//!
//! Why it exists: perf_analyzer 2.60 keeps every request's inputs in its
//! request records, so with 588 KiB ResNet-50 inputs at thousands of requests
//! per second it grows by gigabytes per second until the kernel kills it
//! (BENCHMARKS.md, third pass; triton-inference-server/perf_analyzer#84). This
//! tool builds the request once and shares its payload (`Bytes`) between all
//! calls, so its memory stays flat. It measures throughput and latency
//! percentiles over one window after a warm-up, and, as perf_analyzer does,
//! the server's own averages over the same window from ModelStatistics
//! (queue, compute input / infer / output, and the average batch size),
//! printed in perf_analyzer's words (`Throughput: … infer/sec`,
//! `p50 latency: … usec`, `Avg request latency: …`) so the same scripts read
//! both.
//!
//!
//! `--header KEY:VALUE` (repeatable) sends gRPC metadata with every call, e.g.
//! a tenant's key for a server with a tenants file
//! (`--header "authorization:Bearer $KEY"`).
//!
//!   loadgen --url http://127.0.0.1:8001 --model resnet50_batched \
//!           --input INPUT__0:FP32:1,3,224,224 --concurrency 64

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use rand::RngCore;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};

/// Generated from kiln-kserve's proto/ (Triton's protos), lints are not ours to fix.
#[allow(clippy::all, clippy::pedantic)]
mod proto {
    tonic::include_proto!("inference");
}

use proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use proto::model_infer_request::InferInputTensor;
use proto::{ModelInferRequest, ModelStatistics, ModelStatisticsRequest};

#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The server's gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    url: String,
    #[arg(long)]
    model: String,
    /// NAME:DATATYPE:SHAPE, e.g. INPUT__0:FP32:1,3,224,224 (repeatable).
    /// Filled with random bytes, the same for every request.
    #[arg(long, required = true)]
    input: Vec<String>,
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Seconds of load before measuring (connections, the server's warm-up).
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// KEY:VALUE, gRPC metadata sent with every ModelInfer and ModelStatistics
    /// call, e.g. "authorization:Bearer KEY" (repeatable; the key is lower-cased).
    #[arg(long)]
    header: Vec<String>,
}

/// Bytes per element of a KServe datatype (BYTES is not supported here).
fn element_size(datatype: &str) -> Option<usize> {
    Some(match datatype {
        "BOOL" | "INT8" | "UINT8" => 1,
        "INT16" | "UINT16" | "FP16" | "BF16" => 2,
        "INT32" | "UINT32" | "FP32" => 4,
        "INT64" | "UINT64" | "FP64" => 8,
        _ => return None,
    })
}

fn parse_input(spec: &str) -> Result<(InferInputTensor, Bytes), String> {
    let mut parts = spec.splitn(3, ':');
    let (Some(name), Some(datatype), Some(shape)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("--input '{spec}': expected NAME:DATATYPE:SHAPE"));
    };
    let shape: Vec<i64> = shape
        .split(',')
        .map(|d| d.trim().parse::<i64>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--input '{spec}': shape: {e}"))?;
    let size = element_size(datatype)
        .ok_or_else(|| format!("--input '{spec}': unsupported datatype '{datatype}'"))?;
    let count: i64 = shape.iter().product();
    let mut data = vec![0u8; count.max(0) as usize * size];
    rand::thread_rng().fill_bytes(&mut data);
    if datatype.starts_with("FP") {
        // Finite values: random bit patterns include NaNs and infinities.
        for chunk in data.chunks_mut(size) {
            chunk[size - 1] &= 0x3f;
        }
    }
    let tensor = InferInputTensor {
        name: name.to_string(),
        datatype: datatype.to_string(),
        shape,
        ..Default::default()
    };
    Ok((tensor, Bytes::from(data)))
}

/// The `--header` options as gRPC metadata (ASCII values only).
fn parse_headers(specs: &[String]) -> Result<MetadataMap, String> {
    let mut map = MetadataMap::new();
    for spec in specs {
        let Some((key, value)) = spec.split_once(':') else {
            return Err(format!("--header '{spec}': expected KEY:VALUE"));
        };
        let key: AsciiMetadataKey = key
            .trim()
            .to_ascii_lowercase()
            .parse()
            .map_err(|e| format!("--header '{spec}': key: {e}"))?;
        let value: AsciiMetadataValue = value
            .trim()
            .parse()
            .map_err(|e| format!("--header '{spec}': value: {e}"))?;
        map.append(key, value);
    }
    Ok(map)
}

/// `message` with `headers` as its metadata.
fn with_headers<T>(message: T, headers: &MetadataMap) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    *request.metadata_mut() = headers.clone();
    request
}

/// What one caller saw during the measured window.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

async fn caller(
    url: String,
    request: ModelInferRequest,
    headers: MetadataMap,
    measure_from: Instant,
    until: Instant,
) -> Result<Tally, String> {
    let channel = tonic::transport::Endpoint::from_shared(url)
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        .initial_stream_window_size(16 << 20)
        .initial_connection_window_size(64 << 20)
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let mut client = GrpcInferenceServiceClient::new(channel)
        .max_decoding_message_size(i32::MAX as usize)
        .max_encoding_message_size(i32::MAX as usize);
    let mut tally = Tally::default();
    loop {
        let started = Instant::now();
        if started >= until {
            return Ok(tally);
        }
        // Cloning shares the payload: `raw_input_contents` are `Bytes`.
        let result = client
            .model_infer(with_headers(request.clone(), &headers))
            .await;
        let done = Instant::now();
        if started < measure_from || done > until {
            continue;
        }
        match result {
            Ok(_) => tally
                .latencies_us
                .push(done.duration_since(started).as_micros() as u64),
            Err(status) => {
                tally.errors += 1;
                tally
                    .first_error
                    .get_or_insert_with(|| status.message().to_string());
            }
        }
    }
}

/// The model's statistics at `at` (all versions summed), or why not.
async fn statistics_at(
    url: String,
    model: String,
    headers: MetadataMap,
    at: Instant,
) -> Result<ModelStatistics, String> {
    tokio::time::sleep_until(at.into()).await;
    let mut client = GrpcInferenceServiceClient::connect(url)
        .await
        .map_err(|e| format!("statistics: cannot connect: {e}"))?;
    let stats = client
        .model_statistics(with_headers(
            ModelStatisticsRequest {
                name: model,
                version: String::new(),
            },
            &headers,
        ))
        .await
        .map_err(|s| format!("statistics: {}", s.message()))?
        .into_inner();
    let mut sum = ModelStatistics::default();
    for m in stats.model_stats {
        sum.inference_count += m.inference_count;
        sum.execution_count += m.execution_count;
        let Some(from) = m.inference_stats else {
            continue;
        };
        let to = sum.inference_stats.get_or_insert_default();
        for (f, t) in [
            (from.success, &mut to.success),
            (from.queue, &mut to.queue),
            (from.compute_input, &mut to.compute_input),
            (from.compute_infer, &mut to.compute_infer),
            (from.compute_output, &mut to.compute_output),
        ] {
            let (f, t) = (f.unwrap_or_default(), t.get_or_insert_default());
            t.count += f.count;
            t.ns += f.ns;
        }
    }
    Ok(sum)
}

/// perf_analyzer's server-side line for the window between two snapshots:
/// per-request averages of each phase, and the average batch size.
fn server_side(before: &ModelStatistics, after: &ModelStatistics) -> Option<String> {
    let (b, a) = (
        before.inference_stats.as_ref()?,
        after.inference_stats.as_ref()?,
    );
    let avg_us = |from: &Option<proto::StatisticDuration>,
                  to: &Option<proto::StatisticDuration>| {
        let (f, t) = (from.unwrap_or_default(), to.unwrap_or_default());
        let n = t.count.saturating_sub(f.count);
        (n > 0).then(|| t.ns.saturating_sub(f.ns) / n / 1000)
    };
    let success = avg_us(&b.success, &a.success)?;
    let queue = avg_us(&b.queue, &a.queue).unwrap_or(0);
    let input = avg_us(&b.compute_input, &a.compute_input).unwrap_or(0);
    let infer = avg_us(&b.compute_infer, &a.compute_infer).unwrap_or(0);
    let output = avg_us(&b.compute_output, &a.compute_output).unwrap_or(0);
    let overhead = success.saturating_sub(queue + input + infer + output);
    let executions = after.execution_count.saturating_sub(before.execution_count);
    let inferences = after.inference_count.saturating_sub(before.inference_count);
    Some(format!(
        "  Avg request latency: {success} usec (overhead {overhead} usec + queue {queue} usec + compute input {input} usec + compute infer {infer} usec + compute output {output} usec; average batch {:.1})",
        inferences as f64 / executions.max(1) as f64
    ))
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut request = ModelInferRequest {
        model_name: args.model.clone(),
        ..Default::default()
    };
    for spec in &args.input {
        match parse_input(spec) {
            Ok((tensor, data)) => {
                request.inputs.push(tensor);
                request.raw_input_contents.push(data);
            }
            Err(e) => {
                eprintln!("{e}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let headers = match parse_headers(&args.header) {
        Ok(headers) => headers,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let until = measure_from + Duration::from_secs_f64(args.seconds);
    let callers: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            tokio::spawn(caller(
                args.url.clone(),
                request.clone(),
                headers.clone(),
                measure_from,
                until,
            ))
        })
        .collect();
    let snapshot = |at| {
        tokio::spawn(statistics_at(
            args.url.clone(),
            args.model.clone(),
            headers.clone(),
            at,
        ))
    };
    let (stats_before, stats_after) = (snapshot(measure_from), snapshot(until));
    let mut latencies = Vec::new();
    let (mut errors, mut first_error) = (0u64, None);
    for c in callers {
        match c.await {
            Ok(Ok(t)) => {
                latencies.extend(t.latencies_us);
                errors += t.errors;
                first_error = first_error.or(t.first_error);
            }
            Ok(Err(e)) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("error: a caller panicked: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    latencies.sort_unstable();
    println!(
        "Request concurrency: {}  (loadgen: {} s warm-up, {} s measured)",
        args.concurrency, args.warmup, args.seconds
    );
    println!("  Requests: {} ok, {errors} failed", latencies.len());
    // A window with failures has no throughput worth a table row.
    if let Some(e) = first_error {
        println!("  First error: {e}");
        return std::process::ExitCode::FAILURE;
    }
    if latencies.is_empty() {
        println!("  error: no request completed inside the measured window");
        return std::process::ExitCode::FAILURE;
    }
    println!(
        "  Throughput: {:.2} infer/sec",
        latencies.len() as f64 / args.seconds
    );
    for p in [50.0, 90.0, 99.0] {
        println!("  p{p} latency: {} usec", percentile(&latencies, p));
    }
    // The server's view is extra: a server without statistics still gets its row.
    match (stats_before.await, stats_after.await) {
        (Ok(Ok(before)), Ok(Ok(after))) => {
            if let Some(line) = server_side(&before, &after) {
                println!("{line}");
            }
        }
        (Ok(Err(e)), _) | (_, Ok(Err(e))) => println!("  ({e})"),
        _ => {}
    }
    std::process::ExitCode::SUCCESS
}
