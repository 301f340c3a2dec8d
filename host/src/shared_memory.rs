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
//! anonymous caller kiln behaves the same). Until authentication lands the
//! identity comes from the untrusted `kiln-tenant` header, so this separates
//! namespaces but protects nothing; the key's file permissions do that.
//!
//! CUDA shared memory (`cudaIpcMemHandle_t` regions) is not implemented: its
//! calls answer UNIMPLEMENTED.
//!
//! The unsafe code here is the mapping itself: the region is memory that
//! another process can write at any time, exactly as with Triton. kiln reads it
//! once per request (when the backend copies the input) and writes outputs
//! into it after execution; what the client does to the window meanwhile is
//! the client's business, as the protocol says. One hazard kiln cannot guard
//! against: a client that shrinks (`ftruncate`) the object below a registered
//! window makes later accesses fault (SIGBUS), as it would in Triton.
#![allow(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};
use parking_lot::RwLock;

use crate::context::Identity;
use crate::error::{KilnError, Result};

/// Where POSIX shared-memory objects live on Linux (`shm_open` names).
const SHM_DIR: &str = "/dev/shm";

/// One registered window of a shared-memory object, mapped read-write.
pub struct SystemRegion {
    pub name: String,
    pub key: String,
    pub offset: u64,
    pub byte_size: u64,
    map: MmapRaw,
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
                "shared memory key '{key}' of region '{name}' must be a shm_open name such as '/my_region' (one leading '/', no other)"
            )));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("{SHM_DIR}/{file_name}"))
            .map_err(|e| {
                KilnError::invalid(format!(
                    "Unable to open shared memory region: '{key}' for region '{name}': {e}"
                ))
            })?;
        let len = file
            .metadata()
            .map_err(|e| KilnError::internal(format!("shared memory '{key}': {e}")))?
            .len();
        if byte_size == 0 || offset.checked_add(byte_size).is_none_or(|end| end > len) {
            return Err(KilnError::invalid(format!(
                "failed to register shared memory region '{name}': offset {offset} + byte_size {byte_size} does not fit the {len} bytes of '{key}' (byte_size must be at least 1)"
            )));
        }
        let map = MmapOptions::new()
            .offset(offset)
            .len(byte_size as usize)
            .map_raw(&file)
            .map_err(|e| {
                KilnError::internal(format!("shared memory region '{name}': mmap failed: {e}"))
            })?;
        Ok(Self {
            name: name.to_string(),
            key: key.to_string(),
            offset,
            byte_size,
            map,
        })
    }

    /// The window `[offset, offset + len)` of this region, checked.
    fn window(&self, offset: u64, len: u64) -> Result<std::ops::Range<usize>> {
        match offset.checked_add(len) {
            Some(end) if end <= self.byte_size => Ok(offset as usize..end as usize),
            _ => Err(KilnError::invalid(format!(
                "Invalid offset + byte size for shared memory region: '{}' (offset {offset} + byte size {len} > region size {})",
                self.name, self.byte_size
            ))),
        }
    }
}

/// An input's bytes inside a region. Holding it keeps the mapping alive, so
/// unregistering a region never pulls memory from under a request in flight.
struct InputView {
    region: Arc<SystemRegion>,
    range: std::ops::Range<usize>,
}

impl AsRef<[u8]> for InputView {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `range` was checked against the mapping's length and the
        // mapping lives as long as `region`. The memory is shared with the
        // client, which may write it concurrently; the protocol makes that the
        // client's responsibility (see the module docs).
        unsafe {
            std::slice::from_raw_parts(
                self.region.map.as_ptr().add(self.range.start),
                self.range.len(),
            )
        }
    }
}

/// Where the caller wants an output written.
#[derive(Debug, Clone)]
pub struct OutputPlacement {
    region: Arc<SystemRegion>,
    offset: u64,
    byte_size: u64,
}

impl OutputPlacement {
    /// Writes `data` (the output `name`) at the placement.
    pub fn write(&self, name: &str, data: &[u8]) -> Result<()> {
        if data.len() as u64 > self.byte_size {
            return Err(KilnError::invalid(format!(
                "shared memory size specified with the request for output '{name}' ({} bytes) should be at least {} bytes to hold the results",
                self.byte_size,
                data.len()
            )));
        }
        let range = self.region.window(self.offset, data.len() as u64)?;
        // SAFETY: `range` lies inside the mapping, which `self.region` keeps
        // alive; `data` is kiln's own buffer, so the two cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.region.map.as_mut_ptr().add(range.start),
                data.len(),
            );
        }
        Ok(())
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
}

impl SharedMemory {
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
        if self.find(caller, name).is_some() {
            return Err(already_registered(name));
        }
        let region = Arc::new(SystemRegion::open(name, key, offset, byte_size)?);
        let mut all = self.regions.write();
        let mine = all.entry(caller.clone()).or_default();
        if mine.contains_key(name) {
            return Err(already_registered(name)); // lost a race with another register
        }
        mine.insert(name.to_string(), region);
        tracing::info!(region = name, key, offset, byte_size, caller = ?caller, "registered system shared memory");
        Ok(())
    }

    /// Removes one region, or all of the caller's when `name` is empty.
    /// Unknown names succeed, as in Triton. Requests in flight keep their
    /// mapping until they finish.
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
                    "Unable to find system shared memory region: '{name}'"
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
                "tensor '{tensor}': 'shared_memory_region' is required with the other shared_memory parameters"
            ))
        })?;
        let byte_size = r.byte_size.ok_or_else(|| {
            KilnError::invalid(format!(
                "tensor '{tensor}': 'shared_memory_byte_size' is required with 'shared_memory_region'"
            ))
        })?;
        let found = self.find(caller, region).ok_or_else(|| {
            KilnError::not_found(format!("Unable to find shared memory region: '{region}'"))
        })?;
        Ok((found, r.offset.unwrap_or(0), byte_size))
    }

    /// An input's bytes, viewed in place.
    pub fn input(&self, caller: &Identity, tensor: &str, r: &Reference) -> Result<Bytes> {
        let (region, offset, byte_size) = self.resolve(caller, tensor, r)?;
        let range = region.window(offset, byte_size)?;
        Ok(Bytes::from_owner(InputView { region, range }))
    }

    /// Where to write an output: `None` when its parameters name no shared
    /// memory (it goes in the response). Checked now, so that a bad reference
    /// fails the request before the model runs.
    pub fn output(
        &self,
        caller: &Identity,
        tensor: &str,
        r: &Reference,
    ) -> Result<Option<OutputPlacement>> {
        if !r.is_used() {
            return Ok(None);
        }
        let (region, offset, byte_size) = self.resolve(caller, tensor, r)?;
        region.window(offset, byte_size)?;
        Ok(Some(OutputPlacement {
            region,
            offset,
            byte_size,
        }))
    }
}

fn already_registered(name: &str) -> KilnError {
    KilnError::already_exists(format!("shared memory region '{name}' already in manager"))
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

    #[test]
    fn outputs_written_are_read_back_as_inputs_in_place() {
        let object = Object::new(256);
        let shm = SharedMemory::default();
        let me = Identity::Anonymous;
        shm.register(&me, "r", &object.0, 64, 128).unwrap();
        let out = shm
            .output(&me, "OUT", &reference("r", 16, 8))
            .unwrap()
            .unwrap();
        out.write("OUT", b"0123456789abcdef").unwrap();
        let input = shm.input(&me, "IN", &reference("r", 16, 8)).unwrap();
        assert_eq!(&input[..], b"0123456789abcdef");
        // The window starts at the registered offset of the object.
        let file = std::fs::read(format!("{SHM_DIR}{}", object.0)).unwrap();
        assert_eq!(&file[72..88], b"0123456789abcdef");
        // Tensors that name no region are answered in the response.
        assert!(shm
            .output(&me, "OUT", &Reference::default())
            .unwrap()
            .is_none());
        // Unregistering keeps views alive.
        shm.unregister(&me, "");
        assert_eq!(&input[..4], b"0123");
        assert!(shm.status(&me, "").unwrap().is_empty());
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
        let err = shm.input(&me, "IN", &reference("r", 32, 40)).unwrap_err();
        assert!(
            err.message().contains("Invalid offset + byte size"),
            "{err:?}"
        );
        let err = shm.input(&me, "IN", &reference("nope", 4, 0)).unwrap_err();
        assert!(matches!(err, KilnError::NotFound(_)), "{err:?}");
        let out = shm
            .output(&me, "OUT", &reference("r", 4, 0))
            .unwrap()
            .unwrap();
        let err = out.write("OUT", &[1; 8]).unwrap_err();
        assert!(err.message().contains("'OUT' (4 bytes)"), "{err:?}");
        let err = shm.register(&me, "x", "/../etc/passwd", 0, 1).unwrap_err();
        assert!(err.message().contains("shm_open name"), "{err:?}");
        // Another caller sees none of these.
        let other = Identity::Tenant("other".into());
        assert!(shm.status(&other, "").unwrap().is_empty());
        assert!(shm.input(&other, "IN", &reference("r", 4, 0)).is_err());
    }
}
