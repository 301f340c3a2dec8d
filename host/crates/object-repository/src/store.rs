//! A repository in object storage as a [`RepositorySource`]: its models are
//! the first-level "folders" under the URL's prefix; a model's fingerprint
//! is its objects' names, sizes and ETags (a change to any object changes
//! it, so poll mode reloads exactly the models whose objects changed); a
//! model is materialized by downloading its objects into a folder of the
//! local cache named after that fingerprint, under a temporary name first
//! and renamed whole once every object arrived with its listed size and the
//! listing did not change meanwhile: a half-downloaded version is never
//! loaded.

use std::collections::BTreeMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt, RetryConfig};
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;

use kiln_repository::RepositorySource;

use crate::url::StoreUrl;

/// Most objects one repository listing may hold: a bucket of millions of
/// objects under the prefix is a misconfiguration, not a repository.
pub const MAX_OBJECTS: usize = 100_000;

/// A listing this recent answers `fingerprint` (poll mode lists the whole
/// repository once per pass, then asks each model's fingerprint).
const SNAPSHOT_FRESH: Duration = Duration::from_secs(2);

pub struct ObjectRepository {
    url: String,
    store: Arc<dyn ObjectStore>,
    /// The repository's root within the bucket; empty: the bucket's root.
    prefix: Option<Path>,
    /// This repository's folder of the cache.
    cache: PathBuf,
    /// Object-store I/O runs here: the source is called from the server's
    /// runtime and from blocking threads alike. Always `Some` until drop.
    runtime: Option<tokio::runtime::Runtime>,
    /// The last whole listing and when it was taken.
    snapshot: Mutex<Option<(Instant, Listing)>>,
}

/// A repository's objects by model name.
type Listing = BTreeMap<String, Vec<ObjectMeta>>;

impl ObjectRepository {
    /// Opens the repository at `url` (credentials from the environment, as
    /// Triton reads them), caching downloads under `cache_root`. Nothing is
    /// fetched yet: a wrong credential or bucket shows at the first listing.
    pub fn open(url: &str, cache_root: &FsPath) -> Result<Self, String> {
        let parsed = StoreUrl::parse(url)?;
        let options = ClientOptions::new()
            .with_timeout(Duration::from_secs(60))
            .with_connect_timeout(Duration::from_secs(5));
        // A few quick retries: an unreachable store fails the load in
        // seconds, and the next poll tries again.
        let retry = RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
            ..Default::default()
        };
        let built = match &parsed {
            StoreUrl::S3 {
                endpoint, bucket, ..
            } => {
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_client_options(options)
                    .with_retry(retry);
                if std::env::var_os("AWS_REGION").is_none()
                    && std::env::var_os("AWS_DEFAULT_REGION").is_none()
                {
                    b = b.with_region("us-east-1");
                }
                if let Some(endpoint) = endpoint {
                    b = b
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
            StoreUrl::Gcs { bucket, .. } => {
                let mut options = options;
                let mut key_file = None;
                if let Some((path, base_url)) = service_account_file() {
                    // An emulator named in the key file may speak plain http.
                    if base_url.is_some_and(|u| u.starts_with("http://")) {
                        options = options.with_allow_http(true);
                    }
                    key_file = Some(path);
                }
                let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .with_client_options(options)
                    .with_retry(retry);
                if let Some(path) = key_file {
                    b = b.with_service_account_path(path);
                }
                b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
            StoreUrl::Azure {
                account, container, ..
            } => {
                let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_account(account)
                    .with_container_name(container)
                    .with_client_options(options)
                    .with_retry(retry);
                // Triton's variable; object_store reads AZURE_STORAGE_ACCOUNT_KEY.
                if let Ok(key) = std::env::var("AZURE_STORAGE_KEY") {
                    b = b.with_access_key(key);
                }
                b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
        };
        let store = built.map_err(|e| format!("{url}: {}", message(&e)))?;
        let prefix = match &parsed {
            StoreUrl::S3 { prefix, .. }
            | StoreUrl::Gcs { prefix, .. }
            | StoreUrl::Azure { prefix, .. } => {
                (!prefix.is_empty()).then(|| Path::from(prefix.as_str()))
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kiln-object-store")
            .enable_all()
            .build()
            .map_err(|e| format!("{url}: cannot start the object-store runtime: {e}"))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        url.hash(&mut hasher);
        Ok(Self {
            url: url.to_string(),
            store,
            prefix,
            cache: cache_root.join(format!("{:016x}", hasher.finish())),
            runtime: Some(runtime),
            snapshot: Mutex::new(None),
        })
    }

    /// Runs `work` on the source's runtime from any thread: on a thread of
    /// its own (a runtime cannot block a thread that drives another's
    /// tasks), with the server's worker handed off while it waits.
    fn wait<T: Send>(&self, work: impl Future<Output = T> + Send) -> T {
        let run = || {
            std::thread::scope(|s| {
                s.spawn(|| self.runtime().block_on(work))
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(run)
            }
            _ => run(),
        }
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the repository")
    }

    fn model_prefix(&self, name: &str) -> Path {
        match &self.prefix {
            Some(p) => p.clone().join(name),
            None => Path::from(name),
        }
    }

    /// Every object under `prefix`, bounded.
    async fn list(&self, prefix: Option<&Path>) -> std::io::Result<Vec<ObjectMeta>> {
        let mut stream = self.store.list(prefix);
        let mut all = Vec::new();
        while let Some(meta) = stream.try_next().await.map_err(io_error)? {
            all.push(meta);
            if all.len() > MAX_OBJECTS {
                return Err(std::io::Error::other(format!(
                    "more than {MAX_OBJECTS} objects under the repository's prefix"
                )));
            }
        }
        Ok(all)
    }

    /// The repository's objects by model (first path part under the prefix);
    /// objects beside the models and hidden names (`.x`) are left out.
    fn scan(&self) -> std::io::Result<Listing> {
        let objects = self.wait(self.list(self.prefix.as_ref()))?;
        let mut models = Listing::new();
        for meta in objects {
            let Some(parts) = self.relative(&meta.location) else {
                continue;
            };
            if parts.len() < 2 || parts[0].starts_with('.') {
                continue;
            }
            models.entry(parts[0].clone()).or_default().push(meta);
        }
        *self.snapshot.lock() = Some((Instant::now(), models.clone()));
        Ok(models)
    }

    /// `location`'s parts under the repository's prefix.
    fn relative(&self, location: &Path) -> Option<Vec<String>> {
        let parts: Vec<String> = match &self.prefix {
            Some(p) => location
                .prefix_match(p)?
                .map(|p| p.as_ref().to_string())
                .collect(),
            None => location.parts().map(|p| p.as_ref().to_string()).collect(),
        };
        Some(parts)
    }

    /// Model `name`'s objects: listed now with `list_now`, else from a
    /// snapshot under SNAPSHOT_FRESH old when there is one.
    fn objects(&self, name: &str, list_now: bool) -> std::io::Result<Vec<ObjectMeta>> {
        if !list_now {
            if let Some((taken, models)) = &*self.snapshot.lock() {
                if taken.elapsed() < SNAPSHOT_FRESH {
                    return Ok(models.get(name).cloned().unwrap_or_default());
                }
            }
        }
        let prefix = self.model_prefix(name);
        self.wait(self.list(Some(&prefix)))
    }

    async fn download(&self, objects: &[ObjectMeta], into: &FsPath) -> std::io::Result<()> {
        for meta in objects {
            let parts = self
                .relative(&meta.location)
                .ok_or_else(|| std::io::Error::other("an object outside the model's prefix"))?;
            // parts[0] is the model; a hostile name cannot leave the folder
            // (object_store's paths have no empty, `.` or `..` parts).
            let mut file = into.to_path_buf();
            for part in &parts[1..] {
                if part.is_empty() || part == "." || part == ".." {
                    return Err(std::io::Error::other(format!(
                        "object name '{}' is not a plain path",
                        kiln_types::text::clip(meta.location.as_ref())
                    )));
                }
                file.push(part);
            }
            if let Some(dir) = file.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            let mut out = tokio::fs::File::create(&file).await?;
            let mut stream = self
                .store
                .get(&meta.location)
                .await
                .map_err(io_error)?
                .into_stream();
            let mut written = 0u64;
            while let Some(chunk) = stream.try_next().await.map_err(io_error)? {
                written += chunk.len() as u64;
                if written > meta.size {
                    break;
                }
                out.write_all(&chunk).await?;
            }
            out.flush().await?;
            if written != meta.size {
                return Err(std::io::Error::other(format!(
                    "object '{}' arrived with {written} bytes, listed with {}",
                    kiln_types::text::clip(meta.location.as_ref()),
                    meta.size
                )));
            }
        }
        Ok(())
    }
}

impl Drop for ObjectRepository {
    /// The registry may go from async code at exit; a runtime dropped there
    /// would block (and tokio refuses that), so its threads are let go.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// `GOOGLE_APPLICATION_CREDENTIALS`, Triton's variable, when it names a
/// service-account key file (or an emulator's key file, which has no
/// `type`): object_store then takes it as a service account, which also
/// honours `gcs_base_url` / `disable_oauth` in it. Other credential files
/// (a user's) are left to object_store's application-default handling.
/// Returns the file and its `gcs_base_url`, if any.
fn service_account_file() -> Option<(String, Option<String>)> {
    let path = std::env::var("GOOGLE_APPLICATION_CREDENTIALS").ok()?;
    let text = std::fs::read_to_string(&path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let base_url = json
        .get("gcs_base_url")
        .and_then(|u| u.as_str())
        .map(str::to_string);
    match json.get("type").and_then(|t| t.as_str()) {
        None | Some("service_account") => Some((path, base_url)),
        Some(_) => None,
    }
}

/// What an object-store error says: its chain of causes, each once (the
/// crate's messages repeat their source's), with request URLs' queries cut
/// and the whole bounded, so the status the store answered is what shows.
fn message(e: &object_store::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        let text = kiln_types::text::first_line(&text);
        if !parts.iter().any(|p| p.contains(text)) {
            parts.push(text.to_string());
        }
        next = err.source();
    }
    // Keep the innermost causes (the status, the store's error code) when
    // the chain is long.
    let joined = parts.join(": ");
    let cut: String = joined
        .split(' ')
        .map(|w| match w.split_once('?') {
            Some((url, _)) if url.starts_with("http") => url,
            _ => w,
        })
        .collect::<Vec<_>>()
        .join(" ");
    // The head names the operation, the tail the store's answer.
    const HEAD: usize = 160;
    const TAIL: usize = 400;
    if cut.len() <= HEAD + TAIL {
        return cut;
    }
    let head = floor_boundary(&cut, HEAD);
    let tail = floor_boundary(&cut, cut.len() - TAIL);
    format!("{} … {}", &cut[..head], &cut[tail..])
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn io_error(e: object_store::Error) -> std::io::Error {
    std::io::Error::other(message(&e))
}

/// A fingerprint of a model's objects: names, sizes and ETags (the
/// modification time where a store gives no ETag).
fn fingerprint(objects: &[ObjectMeta]) -> u64 {
    let mut sorted: Vec<&ObjectMeta> = objects.iter().collect();
    sorted.sort_by(|a, b| a.location.cmp(&b.location));
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for m in sorted {
        m.location.as_ref().hash(&mut h);
        m.size.hash(&mut h);
        match &m.e_tag {
            Some(tag) => tag.hash(&mut h),
            None => m.last_modified.timestamp_nanos_opt().hash(&mut h),
        }
        m.version.hash(&mut h);
    }
    h.finish()
}

impl RepositorySource for ObjectRepository {
    fn location(&self) -> String {
        self.url.clone()
    }

    fn models(&self) -> std::io::Result<Vec<String>> {
        Ok(self.scan()?.into_keys().collect())
    }

    fn fingerprint(&self, name: &str) -> Option<u64> {
        match self.objects(name, false) {
            Ok(objects) if !objects.is_empty() => Some(fingerprint(&objects)),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(repository = %self.url, model = %name, "cannot list the model: {e}");
                None
            }
        }
    }

    fn materialize(&self, name: &str) -> std::io::Result<PathBuf> {
        let objects = self.objects(name, true)?;
        if objects.is_empty() {
            return Err(std::io::ErrorKind::NotFound.into());
        }
        let print = fingerprint(&objects);
        // <cache>/<name>@<fingerprint>/<name>: the model's folder keeps its
        // name, which its config must match.
        let done = self.cache.join(format!("{name}@{print:016x}"));
        if done.join(name).is_dir() {
            return Ok(done.join(name));
        }
        std::fs::create_dir_all(&self.cache)?;
        let partial = self.cache.join(format!(
            ".partial-{name}@{print:016x}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let started = Instant::now();
        let fetched = self.wait(self.download(&objects, &partial.join(name))).and_then(|()| {
            // The objects must not have changed while they were fetched: a
            // version half old, half new is not a version.
            let now = self.objects(name, true)?;
            if fingerprint(&now) == print {
                Ok(())
            } else {
                Err(std::io::Error::other(
                    "the model's objects changed while they were downloaded; the next load or poll fetches them again",
                ))
            }
        });
        if let Err(e) = fetched {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
        match std::fs::rename(&partial, &done) {
            Ok(()) => {}
            // Another load finished the same version first.
            Err(_) if done.is_dir() => {
                let _ = std::fs::remove_dir_all(&partial);
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&partial);
                return Err(e);
            }
        }
        let bytes: u64 = objects.iter().map(|m| m.size).sum();
        tracing::info!(
            repository = %self.url,
            model = %name,
            objects = objects.len(),
            bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "model downloaded"
        );
        // Older downloads of this model: what is loaded from them is in
        // memory already.
        if let Ok(entries) = std::fs::read_dir(&self.cache) {
            let mine = format!("{name}@");
            let is_mine = |file: &str| {
                file.strip_prefix(&mine).is_some_and(|print| {
                    print.len() == 16 && print.bytes().all(|b| b.is_ascii_hexdigit())
                })
            };
            for entry in entries.flatten() {
                let file = entry.file_name();
                if is_mine(&file.to_string_lossy()) && entry.path() != done {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(done.join(name))
    }
}
