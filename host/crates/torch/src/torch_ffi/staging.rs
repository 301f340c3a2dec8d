//! How a GPU instance's inputs reach the device while its previous batch
//! still computes.
//!
//! Each instance has two staging slots, each a pinned host buffer and a
//! device buffer of the same size. A batch is gathered from the requests'
//! receive buffers straight into the next slot's pinned buffer (on a shared,
//! persistent pool of gather threads), then copied to the slot's device
//! buffer on the instance's *copy* stream; the compute stream waits for that
//! copy on the device, not on the host. So while batch n's forward runs on
//! the compute stream, batch n + 1 is gathered on the host and copied over
//! PCIe beside it.
//!
//! Reuse is ordered by two events per slot: `copied` (the host-to-device
//! copy has run: the pinned buffer may be written again; the host waits for
//! it) and `consumed` (the forward pass that read the device buffer has run:
//! the copy stream waits for it on the device before overwriting). With two
//! slots and at most two batches in flight per instance (the scheduler's
//! hand-off), neither wait is normally felt.

use std::sync::OnceLock;

use super::cuda::{copy_async, pinned_bytes, CudaEvent, CudaStream};

/// Below this many bytes a gather copies on the calling thread; above it,
/// the parts are spread over the gather pool (a batch of 64 ResNet-50
/// images is 38 MB, several milliseconds on one core).
const PARALLEL_GATHER_BYTES: usize = 4 << 20;
/// Smallest staging buffer, and the alignment of each input within it.
const MIN_STAGING_BYTES: usize = 1 << 20;
const STAGING_ALIGN: usize = 64;
/// Gather threads, shared by every GPU instance of the process: copies are
/// memory-bound, so more threads than this only contend for bandwidth.
const MAX_GATHER_THREADS: usize = 8;

/// The process's gather threads, started on first use (never for a server
/// without GPU instances). `None` when the machine has one core or the pool
/// cannot start: then the instance's own thread gathers.
fn gather_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_GATHER_THREADS);
        if threads < 2 {
            return None;
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("kiln-gather-{i}"))
            .build()
            .map_err(|e| {
                tracing::warn!("cannot start the gather threads ({e}); instances gather alone")
            })
            .ok()
    })
    .as_ref()
}

/// One input to send to the GPU: its parts (a request's buffer, or one per
/// request of a batch, concatenated along the batch dimension) and what
/// they hold together.
pub struct Upload<'a> {
    pub parts: Vec<&'a [u8]>,
    pub shape: Vec<i64>,
    pub kind: tch::Kind,
}

struct Slot {
    /// Pinned host memory and device memory of `capacity` bytes each.
    host: Option<tch::Tensor>,
    device: Option<tch::Tensor>,
    capacity: usize,
    copied: CudaEvent,
    consumed: CudaEvent,
    /// The events have been recorded (the slot carried a batch).
    used: bool,
}

impl Slot {
    fn new() -> Result<Self, String> {
        Ok(Self {
            host: None,
            device: None,
            capacity: 0,
            copied: CudaEvent::new()?,
            consumed: CudaEvent::new()?,
            used: false,
        })
    }

    /// Room for `len` bytes; grows by powers of two. The host waits for the
    /// slot's last batch before the old buffers go.
    fn reserve(&mut self, len: usize, device: tch::Device) -> Result<(), String> {
        if len <= self.capacity {
            return Ok(());
        }
        if self.used {
            self.consumed.synchronize()?;
        }
        let capacity = len.next_power_of_two().max(MIN_STAGING_BYTES);
        (self.host, self.device, self.capacity) = (None, None, 0);
        let host = pinned_bytes(capacity)
            .map_err(|e| format!("cannot allocate {capacity} bytes of pinned host memory: {e}"))?;
        let on_device = tch::Tensor::f_empty([capacity as i64], (tch::Kind::Uint8, device))
            .map_err(|e| format!("cannot allocate {capacity} bytes on {device:?}: {e}"))?;
        (self.host, self.device, self.capacity) = (Some(host), Some(on_device), capacity);
        Ok(())
    }
}

/// A GPU instance's input path: two staging slots and the copy stream.
pub struct InputStaging {
    device: tch::Device,
    copy_stream: CudaStream,
    slots: [Slot; 2],
    /// The slot the next batch goes through.
    next: usize,
    /// The slot uploaded to whose `consumed` is not recorded yet.
    awaiting_consumer: Option<usize>,
}

impl InputStaging {
    pub fn new(device: tch::Device, gpu: usize) -> Result<Self, String> {
        Ok(Self {
            device,
            copy_stream: CudaStream::new(gpu)?,
            slots: [Slot::new()?, Slot::new()?],
            next: 0,
            awaiting_consumer: None,
        })
    }

    /// Gathers every upload into the next slot and queues its copy to the
    /// device on the copy stream; makes `compute` (current again on return)
    /// wait for that copy. Returns device tensors in order, views of the
    /// slot's device buffer: the caller calls [`Self::consumed`] once the
    /// work that reads them is queued on `compute`.
    pub fn upload(
        &mut self,
        uploads: &[Upload],
        compute: &CudaStream,
    ) -> Result<Vec<tch::Tensor>, String> {
        let mut offsets = Vec::with_capacity(uploads.len());
        let mut total = 0usize;
        for u in uploads {
            let len: usize = u.parts.iter().map(|p| p.len()).sum();
            let numel = kiln_types::tensor::element_count(&u.shape).ok_or("invalid shape")?;
            if numel.checked_mul(u.kind.elt_size_in_bytes()) != Some(len) {
                return Err(format!("{len} bytes do not match shape {:?}", u.shape));
            }
            offsets.push((total, len));
            total = (total + len).next_multiple_of(STAGING_ALIGN);
        }
        self.consumed(compute)?;
        let index = self.next;
        let slot = &mut self.slots[index];
        if slot.used {
            // The pinned buffer is still the source of the slot's last copy
            // until this passes (two batches ago: normally long done).
            slot.copied.synchronize()?;
        }
        slot.reserve(total, self.device)?;
        let host = slot.host.as_ref().expect("reserved");
        let gathering = std::time::Instant::now();
        gather(host, uploads, &offsets);
        tracing::debug!(
            target: "kiln::gpu",
            bytes = total,
            gather_us = gathering.elapsed().as_micros() as u64,
            "gathered"
        );

        // From here the slot is in use whatever fails: an event never
        // recorded holds nothing up.
        slot.used = true;
        self.next ^= 1;
        self.awaiting_consumer = Some(index);
        self.copy_stream.make_current()?;
        let queued = (|| {
            // The device buffer was read by the slot's last forward pass.
            slot.consumed.block(&self.copy_stream)?;
            let device_buffer = slot.device.as_ref().expect("reserved");
            let mut sent = Vec::with_capacity(uploads.len());
            for (u, &(start, len)) in uploads.iter().zip(&offsets) {
                let view = |t: &tch::Tensor| {
                    t.f_narrow(0, start as i64, len as i64)
                        .and_then(|t| t.f_view_dtype(u.kind))
                        .and_then(|t| t.f_reshape(&u.shape))
                        .map_err(|e| e.to_string())
                };
                let mut dst = view(device_buffer)?;
                copy_async(&mut dst, &view(host)?)?;
                sent.push(dst);
            }
            slot.copied.record(&self.copy_stream)?;
            Ok::<_, String>(sent)
        })();
        compute.make_current()?;
        let sent = queued?;
        slot.copied.block(compute)?;
        Ok(sent)
    }

    /// Everything that reads the last upload's tensors is queued on
    /// `compute`: its slot may be overwritten once that has run. Call it
    /// also when the forward pass failed (the next upload calls it if the
    /// caller did not).
    pub fn consumed(&mut self, compute: &CudaStream) -> Result<(), String> {
        match self.awaiting_consumer.take() {
            Some(i) => self.slots[i].consumed.record(compute),
            None => Ok(()),
        }
    }
}

/// Copies each upload's parts into `host` at its offset, on the gather pool
/// when there is enough to share.
fn gather(host: &tch::Tensor, uploads: &[Upload], offsets: &[(usize, usize)]) {
    let base = host.data_ptr() as usize;
    // (destination offset, source) for every part of every upload.
    let mut jobs = Vec::new();
    for (u, &(start, _)) in uploads.iter().zip(offsets) {
        let mut at = start;
        for part in &u.parts {
            jobs.push((at, *part));
            at += part.len();
        }
    }
    let copy = |(offset, part): &(usize, &[u8])| {
        // SAFETY: the buffer holds `capacity` >= the total of the offsets
        // and lengths (reserved by the caller); the destination ranges
        // [offset, offset + len) are disjoint (running sums of the lengths,
        // per upload from an aligned start); no device copy reads the
        // buffer now (the caller waited for the slot's `copied`), and
        // nothing else writes it (the instance owns its slots, &mut).
        unsafe {
            std::ptr::copy_nonoverlapping(part.as_ptr(), (base + offset) as *mut u8, part.len())
        };
    };
    let total: usize = jobs.iter().map(|(_, p)| p.len()).sum();
    match gather_pool() {
        Some(pool) if total >= PARALLEL_GATHER_BYTES && jobs.len() > 1 => {
            use rayon::prelude::*;
            pool.install(|| jobs.par_iter().for_each(copy));
        }
        _ => jobs.iter().for_each(copy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gathers `sizes`-byte parts (two uploads) into a CPU buffer and checks
    /// every byte landed at its offset.
    fn gathered_matches(sizes: &[usize]) {
        let parts: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|b| (b * 7 + i * 13) as u8).collect())
            .collect();
        let halves = [&parts[..parts.len() / 2], &parts[parts.len() / 2..]];
        let uploads: Vec<Upload> = halves
            .iter()
            .map(|ps| Upload {
                parts: ps.iter().map(|p| &p[..]).collect(),
                shape: vec![ps.iter().map(|p| p.len() as i64).sum()],
                kind: tch::Kind::Uint8,
            })
            .collect();
        let wanted = halves.map(|ps| ps.concat());
        let second_at = wanted[0].len().next_multiple_of(STAGING_ALIGN);
        let offsets = [(0, wanted[0].len()), (second_at, wanted[1].len())];
        let total = second_at + wanted[1].len();
        let host = tch::Tensor::zeros([total as i64], (tch::Kind::Uint8, tch::Device::Cpu));
        gather(&host, &uploads, &offsets);
        let mut got = vec![0u8; total];
        host.copy_data_u8(&mut got, total);
        assert_eq!(&got[..wanted[0].len()], &wanted[0][..]);
        assert_eq!(&got[second_at..], &wanted[1][..]);
    }

    #[test]
    fn a_small_gather_copies_every_part_in_place() {
        gathered_matches(&[3, 0, 100, 5000]);
    }

    #[test]
    fn a_large_gather_on_the_pool_copies_every_byte_in_place() {
        // Above PARALLEL_GATHER_BYTES, odd lengths (the pool copies when the
        // machine has two cores or more; one core copies alone, same result).
        gathered_matches(&[
            PARALLEL_GATHER_BYTES / 2 + 17,
            1,
            PARALLEL_GATHER_BYTES,
            4095,
        ]);
    }
}
