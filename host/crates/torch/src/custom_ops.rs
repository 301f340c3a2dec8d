//! Custom ops a TorchScript model calls (`torch.ops.ns.name`), implemented
//! by the op plugins its config names (`custom_ops`), through libtorch's
//! dispatcher (csrc/ops.cpp).
//!
//! Before a model's `torch.jit.load`, every op its op plugins declare is
//! defined in the dispatcher with one kernel that comes back here. The
//! dispatcher is process-wide, so an op's name has one schema per process:
//! a plugin that declares another schema for a name already defined fails
//! the load naming both. Which implementation runs is decided per call: the
//! instance thread names the model it runs ([`running`]) and the kernel
//! calls that model's provider of the op, so two models (or two tenants)
//! may provide different implementations of the same op at once.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};

use kiln_ops::{
    Binary, HostOp, OpDecl, OpProvider, OpResolver, OpValue, Reduction, ScalarOp, TensorArena,
    TensorId, Unary,
};
use kiln_types::tensor::Tensor;
use kiln_types::text::first_line;
use tch::Kind;

extern "C" {
    fn kiln_schema_canonical(text: *const c_char, error: *mut *mut c_char) -> *mut c_char;
    fn kiln_schema_registered(name: *const c_char) -> *mut c_char;
    fn kiln_custom_op_define(schema: *const c_char) -> *mut c_char;
    fn kiln_leaky_relu(t: *mut c_void, slope: f64, error: *mut *mut c_char) -> *mut c_void;
    fn kiln_stack_len(stack: *mut c_void) -> usize;
    fn kiln_stack_tag(stack: *mut c_void, i: usize) -> c_int;
    fn kiln_stack_tensor(stack: *mut c_void, i: usize) -> *mut c_void;
    fn kiln_stack_double(stack: *mut c_void, i: usize) -> f64;
    fn kiln_stack_int(stack: *mut c_void, i: usize) -> i64;
    fn kiln_stack_bool(stack: *mut c_void, i: usize) -> bool;
    fn kiln_stack_int_list(stack: *mut c_void, i: usize, out: *mut i64, cap: usize) -> usize;
    fn kiln_stack_double_list(stack: *mut c_void, i: usize, out: *mut f64, cap: usize) -> usize;
    fn kiln_stack_clear(stack: *mut c_void);
    fn kiln_stack_push_tensor(stack: *mut c_void, t: *mut c_void);
}

/// Takes a malloc'd C string from the C++ edge (null: none) and frees it.
fn take_string(p: *mut c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the edge returns NUL-terminated strings from malloc, owned by
    // the caller; copied, then freed exactly once.
    unsafe {
        let s = CStr::from_ptr(p).to_string_lossy().into_owned();
        libc::free(p as *mut c_void);
        Some(s)
    }
}

/// A malloc'd copy of `s` for the C++ edge, which frees it.
fn give_string(s: &str) -> *mut c_char {
    let c = CString::new(s.replace('\0', " ")).unwrap_or_default();
    let bytes = c.as_bytes_with_nul();
    // SAFETY: a fresh allocation of exactly the bytes copied into it.
    unsafe {
        let p = libc::malloc(bytes.len()) as *mut c_char;
        if !p.is_null() {
            std::ptr::copy_nonoverlapping(bytes.as_ptr() as *const c_char, p, bytes.len());
        }
        p
    }
}

fn c_text(s: &str, what: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{what} contains a NUL byte"))
}

/// The schema as libtorch prints it (defaults and spacing normalised), so
/// that two spellings of one schema compare equal.
pub fn canonical_schema(text: &str) -> Result<String, String> {
    let c = c_text(text, "the schema")?;
    let mut error = std::ptr::null_mut();
    // SAFETY: `c` outlives the call; the edge returns malloc'd strings.
    let canonical = unsafe { kiln_schema_canonical(c.as_ptr(), &mut error) };
    match take_string(canonical) {
        Some(s) => Ok(s),
        None => Err(take_string(error).unwrap_or_else(|| "unparsable schema".into())),
    }
}

/// The schema libtorch has under `name` (`ns::name`), from anyone.
fn registered_schema(name: &str) -> Option<String> {
    let c = c_text(name, "the op name").ok()?;
    // SAFETY: `c` outlives the call.
    take_string(unsafe { kiln_schema_registered(c.as_ptr()) })
}

/// Makes the op of `schema` callable from TorchScript, unless libtorch has
/// it already with the same schema; its name.
fn define(schema: &str, plugin: &str) -> Result<String, String> {
    // One definer at a time: check-then-define must not race.
    static DEFINING: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
    let canonical = canonical_schema(schema).map_err(|e| {
        format!(
            "op plugin '{plugin}' declares an op with schema `{}`, which libtorch cannot parse: {}",
            kiln_types::text::clip(schema),
            first_line(&e)
        )
    })?;
    let name = canonical[..canonical.find('(').unwrap_or(canonical.len())].to_string();
    let _one = DEFINING.lock();
    match registered_schema(&name) {
        Some(existing) if existing == canonical => Ok(name),
        Some(existing) => Err(format!(
            "op plugin '{plugin}' declares `{canonical}`, but this process has `{existing}` under that name (from another op plugin or libtorch); one name has one schema per process: rename the op or match the schema"
        )),
        None => {
            let c = c_text(&canonical, "the schema")?;
            // SAFETY: `c` outlives the call.
            match take_string(unsafe { kiln_custom_op_define(c.as_ptr()) }) {
                None => Ok(name),
                Some(e) => Err(format!(
                    "op plugin '{plugin}': cannot define `{canonical}`: {}",
                    first_line(&e)
                )),
            }
        }
    }
}

/// One model's custom ops: which op plugin provides each op it may call.
/// The plugin is looked up by name at every call, not kept: when an op
/// plugin reloads, the model's next calls run the new one while calls in
/// flight finish on the old.
pub struct ModelOps {
    model: String,
    /// Where the model's op plugins are (its namespace); weak, so that a
    /// model does not keep its repository alive.
    resolver: Weak<dyn OpResolver>,
    by_op: HashMap<String, BoundOp>,
}

/// An op as the model loaded it.
struct BoundOp {
    plugin: String,
    /// The schema the op was defined with (the plugin's text).
    schema: String,
}

impl ModelOps {
    /// Resolves the op plugins named in `plugins` and defines their ops.
    pub fn resolve(
        model: &str,
        plugins: &[String],
        resolver: &Arc<dyn OpResolver>,
    ) -> Result<Self, String> {
        let mut by_op: HashMap<String, BoundOp> = HashMap::new();
        for plugin in plugins {
            let provider = resolver.op_plugin(plugin)?;
            if provider.ops().is_empty() {
                return Err(format!("op plugin '{plugin}' provides no ops"));
            }
            for decl in provider.ops() {
                let name = define(&decl.schema, plugin)?;
                if let Some(other) = by_op.get(&name) {
                    return Err(format!(
                        "op plugins '{}' and '{plugin}' both provide {name}; name one of them in custom_ops",
                        other.plugin
                    ));
                }
                let bound = BoundOp {
                    plugin: plugin.clone(),
                    schema: decl.schema.clone(),
                };
                by_op.insert(name, bound);
            }
        }
        Ok(Self {
            model: model.to_string(),
            resolver: Arc::downgrade(resolver),
            by_op,
        })
    }

    /// The ops, each with the plugin providing it and the schema it
    /// declared, sorted by op.
    pub fn ops(&self) -> Vec<(&str, &str, &str)> {
        let mut ops: Vec<_> = self
            .by_op
            .iter()
            .map(|(op, b)| (op.as_str(), b.plugin.as_str(), b.schema.as_str()))
            .collect();
        ops.sort();
        ops
    }

    /// The provider of `op` now, and its declaration, checked against the
    /// schema the op was defined with.
    fn provider(&self, op: &str) -> Result<(Arc<dyn OpProvider>, OpDecl), String> {
        let bound = self.by_op.get(op).ok_or_else(|| {
            format!(
                "model '{}' calls custom op {op}, which none of its op plugins provides",
                self.model
            )
        })?;
        let resolver = self
            .resolver
            .upgrade()
            .ok_or_else(|| format!("model '{}' is unloading", self.model))?;
        let provider = resolver.op_plugin(&bound.plugin)?;
        let decl = provider
            .ops()
            .iter()
            .find(|d| d.name() == op)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "op plugin '{}' no longer provides {op} (it was reloaded); reload model '{}'",
                    bound.plugin, self.model
                )
            })?;
        // A reload with another spelling of the same schema is fine; the
        // canonical comparison runs only when the text differs.
        if decl.schema != bound.schema
            && canonical_schema(&decl.schema).ok() != canonical_schema(&bound.schema).ok()
        {
            return Err(format!(
                "op plugin '{}' now declares `{}` for {op}, but model '{}' was loaded against `{}`; reload the model",
                bound.plugin, decl.schema, self.model, bound.schema
            ));
        }
        Ok((provider, decl))
    }
}

thread_local! {
    /// The ops of the model whose forward pass runs on this thread.
    static RUNNING: RefCell<Option<Arc<ModelOps>>> = const { RefCell::new(None) };
}

/// Runs `f` (a forward pass) with `ops` as the custom ops its calls reach.
pub fn running<R>(ops: Option<&Arc<ModelOps>>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<ModelOps>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            RUNNING.with(|r| *r.borrow_mut() = previous);
        }
    }
    let previous = RUNNING.with(|r| std::mem::replace(&mut *r.borrow_mut(), ops.cloned()));
    let _restore = Restore(previous);
    f()
}

/// The kernel of every op kiln defines (csrc/ops.cpp's forward_to_rust):
/// null, or a malloc'd message the edge raises as a c10::Error.
///
/// # Safety
/// `name` is a NUL-terminated string and `stack` a live
/// `torch::jit::Stack*`, as the dispatcher hands them to the edge's kernel.
#[no_mangle]
pub unsafe extern "C" fn kiln_custom_op_call(
    name: *const c_char,
    stack: *mut c_void,
) -> *mut c_char {
    // Unwinding into C++ is undefined: a panic is one more error here.
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the edge passes the op's NUL-terminated name.
        let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
        call(&name, stack)
    }));
    match outcome {
        Ok(Ok(())) => std::ptr::null_mut(),
        Ok(Err(message)) => give_string(&message),
        Err(panic) => give_string(&format!(
            "custom op panicked: {}",
            kiln_types::error::panic_message(&*panic)
        )),
    }
}

fn call(name: &str, stack: *mut c_void) -> Result<(), String> {
    let ops = RUNNING.with(|r| r.borrow().clone()).ok_or_else(|| {
        format!("custom op {name} called where kiln runs no model with op plugins (a TorchScript fork or a model without custom_ops)")
    })?;
    let (provider, decl) = ops.provider(name)?;
    let arena = TorchArena::default();
    let args = read_arguments(stack, &arena)?;
    let failed = |e: String| {
        format!(
            "custom op {name} (op plugin '{}') of model '{}': {e}",
            provider.name(),
            ops.model
        )
    };
    // What the result must look like, taken before the call: the provider
    // may release its arguments.
    let like = match decl.output_like.and_then(|i| args.get(i as usize)) {
        Some(OpValue::Tensor(arg)) => {
            let t = arena.tensors.lock();
            let want = get(&t, *arg).map_err(failed)?;
            Some((decl.output_like.unwrap_or(0), want.kind(), want.size()))
        }
        _ => None,
    };
    let tensors = arena.tensors.clone();
    let results = provider
        .call(name, &args, Box::new(arena))
        .map_err(failed)?;
    let tensors = tensors.lock();
    let mut out = Vec::with_capacity(results.len());
    for id in &results {
        out.push(get(&tensors, *id).map_err(failed)?.shallow_clone());
    }
    if let (Some((index, kind, size)), [result]) = (like, &out[..]) {
        if size != result.size() || kind != result.kind() {
            return Err(failed(format!(
                "its result is {:?} {:?}; the op declares it like argument {index}, {kind:?} {size:?}",
                result.kind(),
                result.size(),
            )));
        }
    }
    // SAFETY: `stack` is the live argument stack the edge passed; results
    // are pushed as copies of live tensor handles.
    unsafe {
        kiln_stack_clear(stack);
        for mut t in out {
            kiln_stack_push_tensor(stack, t.as_mut_ptr() as *mut c_void);
        }
    }
    Ok(())
}

/// Longest list argument read (a schema's int[] is a shape or a stride).
const MAX_LIST: usize = 64;

fn read_arguments(stack: *mut c_void, arena: &TorchArena) -> Result<Vec<OpValue>, String> {
    // SAFETY: `stack` is the live argument stack; every index is below its
    // length and every accessor matches the tag it reports.
    unsafe {
        let n = kiln_stack_len(stack);
        let mut args = Vec::with_capacity(n);
        for i in 0..n {
            args.push(match kiln_stack_tag(stack, i) {
                0 => OpValue::None,
                1 => {
                    let t = tch::Tensor::from_ptr(kiln_stack_tensor(stack, i) as *mut _);
                    OpValue::Tensor(arena.insert(t)?)
                }
                2 => OpValue::Float(kiln_stack_double(stack, i)),
                3 => OpValue::Int(kiln_stack_int(stack, i)),
                4 => OpValue::Bool(kiln_stack_bool(stack, i)),
                5 => {
                    let mut buf = [0i64; MAX_LIST];
                    let len = kiln_stack_int_list(stack, i, buf.as_mut_ptr(), MAX_LIST);
                    if len > MAX_LIST {
                        return Err(format!("argument {i} has {len} ints; at most {MAX_LIST}"));
                    }
                    OpValue::IntList(buf[..len].to_vec())
                }
                6 => {
                    let mut buf = [0f64; MAX_LIST];
                    let len = kiln_stack_double_list(stack, i, buf.as_mut_ptr(), MAX_LIST);
                    if len > MAX_LIST {
                        return Err(format!("argument {i} has {len} floats; at most {MAX_LIST}"));
                    }
                    OpValue::FloatList(buf[..len].to_vec())
                }
                _ => return Err(format!("argument {i} has a type op plugins do not take")),
            });
        }
        Ok(args)
    }
}

/// Most tensors one op call may hold (arguments, intermediates, results).
const MAX_TENSORS: usize = 4096;

/// The tensors of one op call, on the device of its tensor arguments. The
/// provider owns the arena during the call; the kernel keeps a handle on
/// the tensors to read the results.
#[derive(Default)]
struct TorchArena {
    tensors: Arc<parking_lot::Mutex<Vec<Option<tch::Tensor>>>>,
}

fn get(tensors: &[Option<tch::Tensor>], id: TensorId) -> Result<&tch::Tensor, String> {
    tensors
        .get(id as usize)
        .and_then(Option::as_ref)
        .ok_or_else(|| format!("tensor handle {id} is not live"))
}

impl TorchArena {
    /// Adds `t`; its handle.
    fn insert(&self, t: tch::Tensor) -> Result<TensorId, String> {
        let mut tensors = self.tensors.lock();
        if tensors.len() >= MAX_TENSORS {
            return Err(format!("an op call may hold at most {MAX_TENSORS} tensors"));
        }
        tensors.push(Some(t));
        Ok((tensors.len() - 1) as TensorId)
    }

    fn device(&self) -> tch::Device {
        self.tensors
            .lock()
            .iter()
            .flatten()
            .next()
            .map_or(tch::Device::Cpu, |t| t.device())
    }
}

/// Runs one host op on the call's tensors.
fn run(tensors: &[Option<tch::Tensor>], op: &HostOp) -> Result<tch::Tensor, tch::TchError> {
    let t = |id: &TensorId| get(tensors, *id).map_err(tch::TchError::Kind);
    Ok(match op {
        HostOp::Unary(u, a) => {
            let a = t(a)?;
            match u {
                Unary::Neg => a.f_neg()?,
                Unary::Abs => a.f_abs()?,
                Unary::Relu => a.f_relu()?,
                Unary::Sigmoid => a.f_sigmoid()?,
                Unary::Tanh => a.f_tanh()?,
                Unary::Gelu => a.f_gelu("none")?,
                Unary::Exp => a.f_exp()?,
                Unary::Log => a.f_log()?,
                Unary::Sqrt => a.f_sqrt()?,
                Unary::Rsqrt => a.f_rsqrt()?,
                Unary::Contiguous => a.contiguous(),
            }
        }
        HostOp::Binary(b, x, y) => {
            let (x, y) = (t(x)?, t(y)?);
            match b {
                Binary::Add => x.f_add(y)?,
                Binary::Sub => x.f_sub(y)?,
                Binary::Mul => x.f_mul(y)?,
                Binary::Div => x.f_div(y)?,
                Binary::Pow => x.f_pow(y)?,
                Binary::Maximum => x.f_maximum(y)?,
                Binary::Minimum => x.f_minimum(y)?,
                Binary::Matmul => x.f_matmul(y)?,
            }
        }
        HostOp::Scalar(s, x, v) => {
            let x = t(x)?;
            match s {
                ScalarOp::Add => x.f_add_scalar(*v)?,
                ScalarOp::Sub => x.f_sub_scalar(*v)?,
                ScalarOp::Mul => x.f_mul_scalar(*v)?,
                ScalarOp::Div => x.f_div_scalar(*v)?,
                ScalarOp::Pow => x.f_pow_tensor_scalar(*v)?,
                ScalarOp::LeakyRelu => leaky_relu(x, *v)?,
                ScalarOp::ClampMin => x.f_clamp_min(*v)?,
                ScalarOp::ClampMax => x.f_clamp_max(*v)?,
            }
        }
        HostOp::Reduce {
            op,
            input,
            dims,
            keepdim,
        } => {
            let x = t(input)?;
            let dims: Option<&[i64]> = (!dims.is_empty()).then_some(dims);
            match op {
                Reduction::Sum => x.f_sum_dim_intlist(dims, *keepdim, None::<Kind>)?,
                Reduction::Mean => x.f_mean_dim(dims, *keepdim, None::<Kind>)?,
                Reduction::Amax => x.f_amax(dims.unwrap_or(&[]), *keepdim)?,
                Reduction::Amin => x.f_amin(dims.unwrap_or(&[]), *keepdim)?,
            }
        }
        HostOp::Reshape(x, shape) => t(x)?.f_reshape(shape.as_slice())?,
        HostOp::Permute(x, dims) => t(x)?.f_permute(dims.as_slice())?,
        HostOp::Flip(x, dims) => t(x)?.f_flip(dims.as_slice())?,
        HostOp::Pad { input, pad, value } => {
            t(input)?.f_pad(pad.as_slice(), "constant", Some(*value))?
        }
        HostOp::Slice {
            input,
            dim,
            start,
            end,
            step,
        } => t(input)?.f_slice(*dim, Some(*start), Some(*end), *step)?,
        HostOp::Cat(ids, dim) => {
            let parts = ids.iter().map(t).collect::<Result<Vec<_>, _>>()?;
            tch::Tensor::f_cat(&parts, *dim)?
        }
        HostOp::Conv2d {
            input,
            weight,
            bias,
            stride,
            padding,
            dilation,
            groups,
        } => {
            let bias = bias.as_ref().map(t).transpose()?;
            t(input)?.f_conv2d(
                t(weight)?,
                bias,
                stride.as_slice(),
                padding.as_slice(),
                dilation.as_slice(),
                *groups,
            )?
        }
        HostOp::ConvTranspose2d {
            input,
            weight,
            bias,
            stride,
            padding,
            output_padding,
            dilation,
            groups,
        } => {
            let bias = bias.as_ref().map(t).transpose()?;
            t(input)?.f_conv_transpose2d(
                t(weight)?,
                bias,
                stride.as_slice(),
                padding.as_slice(),
                output_padding.as_slice(),
                *groups,
                dilation.as_slice(),
            )?
        }
    })
}

fn leaky_relu(x: &tch::Tensor, slope: f64) -> Result<tch::Tensor, tch::TchError> {
    let mut error = std::ptr::null_mut();
    // SAFETY: `x` is a live tensor; the edge returns a new handle we own, or
    // null with a malloc'd message.
    let p = unsafe { kiln_leaky_relu(x.as_ptr() as *mut c_void, slope, &mut error) };
    match take_string(error) {
        Some(e) => Err(tch::TchError::Torch(e)),
        // SAFETY: a non-null, freshly allocated tensor handle.
        None if !p.is_null() => Ok(unsafe { tch::Tensor::from_ptr(p as *mut _) }),
        None => Err(tch::TchError::Torch("leaky_relu returned nothing".into())),
    }
}

impl TensorArena for TorchArena {
    fn shape(&self, id: TensorId) -> Result<Vec<i64>, String> {
        Ok(get(&self.tensors.lock(), id)?.size())
    }

    fn datatype(&self, id: TensorId) -> Result<kiln_types::tensor::DataType, String> {
        let kind = get(&self.tensors.lock(), id)?.kind();
        crate::kinds::datatype_of(kind)
            .ok_or_else(|| format!("tensor {id} is a {kind:?}, which has no KServe datatype"))
    }

    fn apply(&mut self, op: &HostOp) -> Result<TensorId, String> {
        let made =
            run(&self.tensors.lock(), op).map_err(|e| first_line(&e.to_string()).to_string())?;
        self.insert(made)
    }

    fn read(&mut self, id: TensorId) -> Result<Tensor, String> {
        let datatype = self.datatype(id)?;
        let host = get(&self.tensors.lock(), id)?
            .f_to_device(tch::Device::Cpu)
            .and_then(|t| t.f_contiguous())
            .map_err(|e| first_line(&e.to_string()).to_string())?;
        let numel = host.numel();
        let mut data = vec![0u8; numel * host.kind().elt_size_in_bytes()];
        host.f_copy_data_u8(&mut data, numel)
            .map_err(|e| first_line(&e.to_string()).to_string())?;
        Ok(Tensor::new(
            String::new(),
            datatype,
            host.size(),
            data.into(),
        ))
    }

    fn create(&mut self, t: &Tensor) -> Result<TensorId, String> {
        let kind = crate::kinds::kind_of(t.datatype)
            .ok_or_else(|| format!("an op cannot make a {} tensor", t.datatype))?;
        let numel = kiln_types::tensor::element_count(&t.shape)
            .ok_or_else(|| format!("shape {:?} is not a tensor's", t.shape))?;
        if numel.checked_mul(kind.elt_size_in_bytes()) != Some(t.data.len()) {
            return Err(format!(
                "{} bytes do not make a {} tensor of shape {:?}",
                t.data.len(),
                t.datatype,
                t.shape
            ));
        }
        let device = self.device();
        let made = tch::Tensor::f_from_data_size(&t.data, &t.shape, kind)
            .and_then(|cpu| cpu.f_to_device(device))
            .map_err(|e| first_line(&e.to_string()).to_string())?;
        self.insert(made)
    }

    fn release(&mut self, id: TensorId) {
        if let Some(slot) = self.tensors.lock().get_mut(id as usize) {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests;
