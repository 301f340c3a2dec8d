//! Triton's system shared-memory extension. A client creates a POSIX
//! shared-memory object (`shm_open`, i.e. `/dev/shm/<key>`), registers a window
//! of it as a named region, and then names a region, offset and byte size in
//! place of a tensor's bytes, for inputs and outputs alike. Large tensors then
//! cross neither the socket nor the protobuf/JSON codec: an input is read
//! straight out of the mapping (no copy until the backend gathers it into its
//! staging buffer) and an output is written straight into it.
//!
//! Regions are kept per caller identity: a tenant sees, uses and unregisters
//! only the regions it registered (Triton has one global namespace; with one
//! anonymous caller kiln behaves the same). With a tenants file the identity
//! is the authenticated tenant, so another tenant cannot see, use or
//! unregister a region; without one it is at most the unverified
//! `kiln-tenant` header, which separates namespaces but protects nothing
//! (the key's file permissions do that).
//!
//! CUDA shared memory (`cudaIpcMemHandle_t` regions) is not implemented: its
//! calls answer UNIMPLEMENTED.
//!
//! Regions are read and written with `pread`/`pwrite` on the object's file,
//! never mapped. A mapping would save one copy per input, but a client that
//! shrinks (`ftruncate`) its object under a registered window would make the
//! next access to the mapping kill the server with SIGBUS; a read past the
//! end of a file is an error instead, answered to that one request. It also
//! costs no address space: a region is an open file, so registrations are
//! bounded by count (per caller and in total), not by mapped bytes.
//!
//! Objects are opened as `shm_open` does (`O_NOFOLLOW`): a key that names a
//! symlink is refused, as is anything but a regular file (a FIFO, a device),
//! so a region cannot redirect kiln's writes to another file. A caller may
//! register one key once (Triton refuses a second registration of a key
//! too). Who may register at all is the operator's choice:
//! `--grpc-restricted-protocol` / `--http-restricted-api` (see
//! `protocol::restricted`).

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;

use kiln_types::context::Identity;
use kiln_types::error::{KilnError, Result};
use kiln_types::text::clip;

/// Where POSIX shared-memory objects live on Linux (`shm_open` names).
const SHM_DIR: &str = "/dev/shm";

/// How many regions may be registered, per caller and in all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegionLimits {
    pub per_caller: usize,
    pub total: usize,
}

impl Default for RegionLimits {
    fn default() -> Self {
        Self {
            per_caller: 256,
            total: 4096,
        }
    }
}

/// One registered window of a shared-memory object.
pub struct SystemRegion {
    pub name: String,
    pub key: String,
    pub offset: u64,
    pub byte_size: u64,
    file: File,
}

impl std::fmt::Debug for SystemRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemRegion")
            .field("name", &self.name)
            .field("key", &self.key)
            .field("offset", &self.offset)
            .field("byte_size", &self.byte_size)
            .finish()
    }
}

impl SystemRegion {
    fn open(name: &str, key: &str, offset: u64, byte_size: u64) -> Result<Self> {
        let file_name = key.strip_prefix('/').unwrap_or(key);
        if file_name.is_empty() || file_name.contains('/') || file_name == "." || file_name == ".."
        {
            return Err(KilnError::invalid(format!(
                "shared memory key '{}' of region '{}' must be a shm_open name such as '/my_region' (one leading '/', no other)",
                clip(key),
                clip(name)
            )));
        }
        let open_error = |e: std::io::Error| {
            let why = if e.raw_os_error() == Some(libc::ELOOP) {
                "it is a symbolic link, which shm_open refuses".to_string()
            } else {
                e.to_string()
            };
            KilnError::invalid(format!(
                "Unable to open shared memory region: '{}' for region '{}': {why}",
                clip(key),
                clip(name)
            ))
        };
        // O_NONBLOCK: opening a FIFO must not wait for a writer; it is then
        // refused below like any other non-regular file.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(format!("{SHM_DIR}/{file_name}"))
            .map_err(open_error)?;
        let meta = file
            .metadata()
            .map_err(|e| KilnError::internal(format!("shared memory '{}': {e}", clip(key))))?;
        if !meta.file_type().is_file() {
            return Err(KilnError::invalid(format!(
                "Unable to open shared memory region: '{}' for region '{}': not a shared memory object (a regular file in {SHM_DIR})",
                clip(key),
                clip(name)
            )));
        }
        let len = meta.len();
        if byte_size == 0 || offset.checked_add(byte_size).is_none_or(|end| end > len) {
            return Err(KilnError::invalid(format!(
                "failed to register shared memory region '{}': offset {offset} + byte_size {byte_size} does not fit the {len} bytes of '{}' (byte_size must be at least 1)",
                clip(name),
                clip(key)
            )));
        }
        Ok(Self {
            name: name.to_string(),
            key: key.to_string(),
            offset,
            byte_size,
            file,
        })
    }

    /// The window `[offset, offset + len)` of this region, checked; as an
    /// offset into the object.
    fn window(&self, offset: u64, len: u64) -> Result<u64> {
        match offset.checked_add(len) {
            Some(end) if end <= self.byte_size => Ok(self.offset + offset),
            _ => Err(KilnError::invalid(format!(
                "Invalid offset + byte size for shared memory region: '{}' (offset {offset} + byte size {len} > region size {})",
                clip(&self.name),
                self.byte_size
            ))),
        }
    }

    fn truncated(&self) -> KilnError {
        KilnError::invalid(format!(
            "shared memory region '{}': object '{}' is shorter than the registered window (truncated after registration)",
            clip(&self.name),
            clip(&self.key)
        ))
    }

    fn read(&self, at: u64, len: u64) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len as usize];
        self.file.read_exact_at(&mut buf, at).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.truncated()
            } else {
                KilnError::internal(format!(
                    "shared memory region '{}': read failed: {e}",
                    clip(&self.name)
                ))
            }
        })?;
        Ok(buf)
    }

    fn write(&self, at: u64, data: &[u8]) -> Result<()> {
        // Writing past the end would grow the client's object: refuse, as
        // reading past it is refused.
        let len = self
            .file
            .metadata()
            .map_err(|e| KilnError::internal(format!("shared memory '{}': {e}", clip(&self.key))))?
            .len();
        if at + data.len() as u64 > len {
            return Err(self.truncated());
        }
        self.file.write_all_at(data, at).map_err(|e| {
            KilnError::internal(format!(
                "shared memory region '{}': write failed: {e}",
                clip(&self.name)
            ))
        })
    }
}

/// Where the caller wants an output written.
#[derive(Debug, Clone)]
pub struct OutputPlacement {
    region: Arc<SystemRegion>,
    offset: u64,
    byte_size: u64,
}

impl kiln_pipeline::OutputDestination for OutputPlacement {
    /// Writes `data` (the output `name`) at the placement.
    fn write(&self, name: &str, data: &[u8]) -> Result<()> {
        if data.len() as u64 > self.byte_size {
            return Err(KilnError::invalid(format!(
                "shared memory size specified with the request for output '{}' ({} bytes) should be at least {} bytes to hold the results",
                clip(name),
                self.byte_size,
                data.len()
            )));
        }
        let at = self.region.window(self.offset, data.len() as u64)?;
        self.region.write(at, data)
    }
}

/// A tensor's `shared_memory_*` parameters, as either protocol carries them.
#[derive(Debug, Default, PartialEq)]
pub struct Reference {
    pub region: Option<String>,
    pub byte_size: Option<u64>,
    pub offset: Option<u64>,
}

impl Reference {
    /// Whether the tensor names shared memory at all.
    pub fn is_used(&self) -> bool {
        *self != Reference::default()
    }
}

/// The regions registered with this server, per caller.
#[derive(Default)]
pub struct SharedMemory {
    regions: RwLock<HashMap<Identity, BTreeMap<String, Arc<SystemRegion>>>>,
    limits: RegionLimits,
}

impl SharedMemory {
    pub fn new(limits: RegionLimits) -> Self {
        Self {
            regions: RwLock::default(),
            limits,
        }
    }

    pub fn register(
        &self,
        caller: &Identity,
        name: &str,
        key: &str,
        offset: u64,
        byte_size: u64,
    ) -> Result<()> {
        if name.is_empty() {
            return Err(KilnError::invalid(
                "a shared memory region needs a non-empty name",
            ));
        }
        self.check_new(caller, name, key)?;
        // Opened outside the lock: a slow filesystem must not stall inference.
        let region = Arc::new(SystemRegion::open(name, key, offset, byte_size)?);
        let mut all = self.regions.write();
        Self::check_new_locked(&all, &self.limits, caller, name, key)?; // lost a race?
        all.entry(caller.clone())
            .or_default()
            .insert(name.to_string(), region);
        tracing::info!(region = %clip(name), key = %clip(key), offset, byte_size, caller = ?caller, "registered system shared memory");
        Ok(())
    }

    fn check_new(&self, caller: &Identity, name: &str, key: &str) -> Result<()> {
        Self::check_new_locked(&self.regions.read(), &self.limits, caller, name, key)
    }

    fn check_new_locked(
        all: &HashMap<Identity, BTreeMap<String, Arc<SystemRegion>>>,
        limits: &RegionLimits,
        caller: &Identity,
        name: &str,
        key: &str,
    ) -> Result<()> {
        let mine = all.get(caller);
        if mine.is_some_and(|m| m.contains_key(name)) {
            return Err(already_registered(name));
        }
        if let Some(other) = mine.and_then(|m| m.values().find(|r| r.key == key)) {
            return Err(KilnError::already_exists(format!(
                "shared memory key '{}' is already registered as region '{}'; a key can be registered once",
                clip(key),
                clip(&other.name)
            )));
        }
        if mine.map_or(0, BTreeMap::len) >= limits.per_caller {
            return Err(KilnError::resource_exhausted(format!(
                "cannot register shared memory region '{}': {} regions are registered already, the most one caller may have (--shared-memory-max-regions)",
                clip(name),
                limits.per_caller
            )));
        }
        if all.values().map(BTreeMap::len).sum::<usize>() >= limits.total {
            return Err(KilnError::resource_exhausted(format!(
                "cannot register shared memory region '{}': the server holds {} regions, its limit (--shared-memory-max-regions-total)",
                clip(name),
                limits.total
            )));
        }
        Ok(())
    }

    /// Removes one region, or all of the caller's when `name` is empty.
    /// Unknown names succeed, as in Triton. Requests in flight keep their
    /// region open until they finish.
    pub fn unregister(&self, caller: &Identity, name: &str) {
        let mut all = self.regions.write();
        if let Some(mine) = all.get_mut(caller) {
            if name.is_empty() {
                mine.clear();
            } else {
                mine.remove(name);
            }
            if mine.is_empty() {
                all.remove(caller);
            }
        }
    }

    /// One region, or all of the caller's when `name` is empty, by name.
    pub fn status(&self, caller: &Identity, name: &str) -> Result<Vec<Arc<SystemRegion>>> {
        if !name.is_empty() {
            return self.find(caller, name).map(|r| vec![r]).ok_or_else(|| {
                KilnError::not_found(format!(
                    "Unable to find system shared memory region: '{}'",
                    clip(name)
                ))
            });
        }
        Ok(self
            .regions
            .read()
            .get(caller)
            .map(|mine| mine.values().cloned().collect())
            .unwrap_or_default())
    }

    fn find(&self, caller: &Identity, name: &str) -> Option<Arc<SystemRegion>> {
        self.regions.read().get(caller)?.get(name).cloned()
    }

    fn resolve(
        &self,
        caller: &Identity,
        tensor: &str,
        r: &Reference,
    ) -> Result<(Arc<SystemRegion>, u64, u64)> {
        let region = r.region.as_deref().ok_or_else(|| {
            KilnError::invalid(format!(
                "tensor '{}': 'shared_memory_region' is required with the other shared_memory parameters",
                clip(tensor)
            ))
        })?;
        let byte_size = r.byte_size.ok_or_else(|| {
            KilnError::invalid(format!(
                "tensor '{}': 'shared_memory_byte_size' is required with 'shared_memory_region'",
                clip(tensor)
            ))
        })?;
        let found = self.find(caller, region).ok_or_else(|| {
            KilnError::not_found(format!(
                "Unable to find shared memory region: '{}'",
                clip(region)
            ))
        })?;
        Ok((found, r.offset.unwrap_or(0), byte_size))
    }

    /// An input's bytes, read from the region now. `max_bytes` is the most
    /// the protocol would have accepted inline: a window is no way around it.
    pub fn input(
        &self,
        caller: &Identity,
        tensor: &str,
        r: &Reference,
        max_bytes: usize,
    ) -> Result<Bytes> {
        let (region, offset, byte_size) = self.resolve(caller, tensor, r)?;
        let at = region.window(offset, byte_size)?;
        if byte_size > max_bytes as u64 {
            return Err(KilnError::too_large(format!(
                "input '{}': shared memory byte size {byte_size} is larger than the {max_bytes} bytes a request may carry (max input size)",
                clip(tensor)
            )));
        }
        Ok(Bytes::from(region.read(at, byte_size)?))
    }

    /// Where to write an output: `None` when its parameters name no shared
    /// memory (it goes in the response). Checked now, so that a bad reference
    /// fails the request before the model runs.
    pub fn output(
        &self,
        caller: &Identity,
        tensor: &str,
        r: &Reference,
    ) -> Result<Option<Arc<dyn kiln_pipeline::OutputDestination>>> {
        if !r.is_used() {
            return Ok(None);
        }
        let (region, offset, byte_size) = self.resolve(caller, tensor, r)?;
        region.window(offset, byte_size)?;
        Ok(Some(Arc::new(OutputPlacement {
            region,
            offset,
            byte_size,
        })))
    }
}

fn already_registered(name: &str) -> KilnError {
    KilnError::already_exists(format!(
        "shared memory region '{}' already in manager",
        clip(name)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Object(String);
    impl Object {
        fn new(len: usize) -> Self {
            let key = format!(
                "/kiln_unit_{}_{}",
                std::process::id(),
                rand::random::<u32>()
            );
            std::fs::write(format!("{SHM_DIR}{key}"), vec![0u8; len]).unwrap();
            Self(key)
        }
    }
    impl Drop for Object {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(format!("{SHM_DIR}{}", self.0));
        }
    }

    fn reference(region: &str, byte_size: u64, offset: u64) -> Reference {
        Reference {
            region: Some(region.to_string()),
            byte_size: Some(byte_size),
            offset: Some(offset),
        }
    }

    const MAX: usize = 1 << 20;

    #[test]
    fn outputs_written_are_read_back_as_inputs() {
        let object = Object::new(256);
        let shm = SharedMemory::default();
        let me = Identity::Anonymous;
        shm.register(&me, "r", &object.0, 64, 128).unwrap();
        let out = shm
            .output(&me, "OUT", &reference("r", 16, 8))
            .unwrap()
            .unwrap();
        out.write("OUT", b"0123456789abcdef").unwrap();
        let input = shm.input(&me, "IN", &reference("r", 16, 8), MAX).unwrap();
        assert_eq!(&input[..], b"0123456789abcdef");
        // The window starts at the registered offset of the object.
        let file = std::fs::read(format!("{SHM_DIR}{}", object.0)).unwrap();
        assert_eq!(&file[72..88], b"0123456789abcdef");
        // Tensors that name no region are answered in the response.
        assert!(shm
            .output(&me, "OUT", &Reference::default())
            .unwrap()
            .is_none());
        // A window larger than a request may carry is refused.
        let e = shm
            .input(&me, "IN", &reference("r", 16, 8), 15)
            .unwrap_err();
        assert!(matches!(e, KilnError::TooLarge(_)), "{e:?}");
        shm.unregister(&me, "");
        assert!(shm.status(&me, "").unwrap().is_empty());
    }

    #[test]
    fn a_truncated_object_fails_the_request_not_the_server() {
        let object = Object::new(256);
        let shm = SharedMemory::default();
        let me = Identity::Anonymous;
        shm.register(&me, "r", &object.0, 0, 256).unwrap();
        let out = shm
            .output(&me, "OUT", &reference("r", 16, 128))
            .unwrap()
            .unwrap();
        let path = format!("{SHM_DIR}{}", object.0);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(64)
            .unwrap();
        let e = shm
            .input(&me, "IN", &reference("r", 16, 128), MAX)
            .unwrap_err();
        assert!(e.message().contains("truncated"), "{e}");
        let e = out.write("OUT", &[1; 16]).unwrap_err();
        assert!(e.message().contains("truncated"), "{e}");
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            64,
            "a write grew the object"
        );
    }

    #[test]
    fn symlinks_and_non_files_are_refused() {
        let target = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(target.path(), [0u8; 64]).unwrap();
        let link = format!(
            "/kiln_unit_link_{}_{}",
            std::process::id(),
            rand::random::<u32>()
        );
        std::os::unix::fs::symlink(target.path(), format!("{SHM_DIR}{link}")).unwrap();
        let shm = SharedMemory::default();
        let me = Identity::Anonymous;
        let e = shm.register(&me, "l", &link, 0, 64).unwrap_err();
        let _ = std::fs::remove_file(format!("{SHM_DIR}{link}"));
        assert!(e.message().contains("symbolic link"), "{e}");
        let dir = format!(
            "/kiln_unit_dir_{}_{}",
            std::process::id(),
            rand::random::<u32>()
        );
        std::fs::create_dir(format!("{SHM_DIR}{dir}")).unwrap();
        let e = shm.register(&me, "d", &dir, 0, 1).unwrap_err();
        let _ = std::fs::remove_dir(format!("{SHM_DIR}{dir}"));
        assert!(matches!(e, KilnError::InvalidArgument(_)), "{e:?}");
        assert!(shm.status(&me, "").unwrap().is_empty());
    }

    #[test]
    fn keys_register_once_and_counts_are_bounded() {
        let a = Object::new(64);
        let b = Object::new(64);
        let shm = SharedMemory::new(RegionLimits {
            per_caller: 1,
            total: 2,
        });
        let (me, you, them) = (
            Identity::Anonymous,
            Identity::Claimed("you".into()),
            Identity::Claimed("them".into()),
        );
        shm.register(&me, "r", &a.0, 0, 64).unwrap();
        let e = shm.register(&me, "again", &a.0, 0, 32).unwrap_err();
        assert!(
            matches!(e, KilnError::AlreadyExists(ref m) if m.contains("'r'")),
            "{e:?}"
        );
        let e = shm.register(&me, "other", &b.0, 0, 64).unwrap_err();
        assert!(matches!(e, KilnError::ResourceExhausted(_)), "{e:?}");
        shm.register(&you, "r", &a.0, 0, 64).unwrap(); // another caller may
        let e = shm.register(&them, "r", &b.0, 0, 64).unwrap_err();
        assert!(e.message().contains("total"), "{e}");
        shm.unregister(&me, "r");
        shm.register(&them, "r", &b.0, 0, 64).unwrap();
    }

    #[test]
    fn bad_references_name_the_problem() {
        let object = Object::new(64);
        let shm = SharedMemory::default();
        let me = Identity::Anonymous;
        let err = shm.register(&me, "big", &object.0, 0, 65).unwrap_err();
        assert!(
            matches!(err, KilnError::InvalidArgument(ref m) if m.contains("'big'")),
            "{err:?}"
        );
        shm.register(&me, "r", &object.0, 0, 64).unwrap();
        let err = shm.register(&me, "r", &object.0, 0, 64).unwrap_err();
        assert!(matches!(err, KilnError::AlreadyExists(_)), "{err:?}");
        let err = shm
            .input(&me, "IN", &reference("r", 32, 40), MAX)
            .unwrap_err();
        assert!(
            err.message().contains("Invalid offset + byte size"),
            "{err:?}"
        );
        let err = shm
            .input(&me, "IN", &reference("nope", 4, 0), MAX)
            .unwrap_err();
        assert!(matches!(err, KilnError::NotFound(_)), "{err:?}");
        let out = shm
            .output(&me, "OUT", &reference("r", 4, 0))
            .unwrap()
            .unwrap();
        let err = out.write("OUT", &[1; 8]).unwrap_err();
        assert!(err.message().contains("'OUT' (4 bytes)"), "{err:?}");
        let err = shm.register(&me, "x", "/../etc/passwd", 0, 1).unwrap_err();
        assert!(err.message().contains("shm_open name"), "{err:?}");
        let long = "n".repeat(1 << 20);
        let err = shm.status(&me, &long).unwrap_err();
        assert!(err.message().len() < 400, "{}", err.message().len());
        // Another caller sees none of these.
        let other = Identity::Claimed("other".into());
        assert!(shm.status(&other, "").unwrap().is_empty());
        assert!(shm.input(&other, "IN", &reference("r", 4, 0), MAX).is_err());
    }
}
