// normalize: FP32 INPUT (any shape) -> FP32 OUTPUT = (INPUT - mean) / std.
//
// `mean` and `std` are the model's config.pbtxt parameters (defaults 0 and 1),
// read through the host import `get-parameter`. A `std` of 0, or a value that
// is not a finite decimal number, fails the request with invalid-argument
// naming the parameter; so does a request without INPUT.
//
// AssemblyScript has no component-model bindings generator, so this file
// implements the canonical ABI of world `plugin` by hand, exactly as
// sdk/ABI.md, "Core-module ABI", lays it out (record offsets, who allocates,
// who frees). plugins/assemblyscript/build.sh compiles it to a core module and
// renames the exports to their ABI names (AssemblyScript exports only
// identifiers); kiln loads that core module directly, recognising it by the
// ABI-version marker below. See sdk/assemblyscript/README.md.

// --- host imports (kiln:plugin/host@1.0.0) ------------------------------------

// @ts-ignore: decorator
@external("kiln:plugin/host@1.0.0", "get-parameter")
declare function hostGetParameter(keyPtr: usize, keyLen: usize, retPtr: usize): void;

// @ts-ignore: decorator
@external("kiln:plugin/host@1.0.0", "log")
declare function hostLog(level: u32, msgPtr: usize, msgLen: usize, fieldsPtr: usize, fieldsLen: usize): void;

// The core-module ABI's version marker: this module implements kiln:plugin@1.0.0.
// kiln never calls it.
export function kiln_abi_version_1_0_0(): void {}

// --- memory ----------------------------------------------------------------------

// Blocks handed to kiln in a call's result; freed in the matching cabi_post_*.
const owned = new Array<usize>();

function alloc(size: usize): usize {
  return size == 0 ? 8 : heap.alloc(size); // empty lists: any aligned non-null pointer
}

function release(ptr: usize, size: usize): void {
  if (size != 0) heap.free(ptr);
}

// The allocator kiln calls to place arguments and import results in our memory.
export function cabi_realloc(oldPtr: usize, oldSize: usize, align: usize, newSize: usize): usize {
  if (oldSize == 0) return newSize == 0 ? align : heap.alloc(newSize);
  if (newSize == 0) { heap.free(oldPtr); return align; }
  return heap.realloc(oldPtr, newSize); // TLSF blocks are 16-byte aligned
}

/** A string as UTF-8 in a fresh block: writes (ptr, len) at `at`. */
function storeString(at: usize, s: string): void {
  const utf8 = String.UTF8.encode(s);
  const len = <usize>utf8.byteLength;
  const ptr = alloc(len);
  memory.copy(ptr, changetype<usize>(utf8), len);
  if (len != 0) owned.push(ptr);
  store<u32>(at, <u32>ptr);
  store<u32>(at, <u32>len, 4);
}

function loadString(at: usize): string {
  return String.UTF8.decodeUnsafe(load<u32>(at), load<u32>(at, 4));
}

// --- ABI constants (sdk/ABI.md) ----------------------------------------------------

const FP32: u8 = 10;              // datatype
const INVALID_ARGUMENT: u8 = 0;   // error-kind
const LOG_ERROR: u32 = 4;         // log-level
const TENSOR_SIZE: usize = 36;    // tensor: name 0, datatype 8, shape 12, data 20, elements 28
const SPEC_SIZE: usize = 20;      // tensor-spec: name 0, datatype 8, dims 12
const PARAM_SIZE: usize = 24;     // parameter: key 0, value 8 (tag 8, payload 16)

// The result area of `process` (result<list<tensor>, error>, 16 bytes).
const RET: usize = memory.data(16, 8);

// --- config parameters ---------------------------------------------------------------

class PluginError {
  constructor(public kind: u8, public message: string) {}
}

function isDigit(c: i32): bool { return c >= 48 && c <= 57; }

/** [+-]?(digits[.digits?] | .digits)([eE][+-]?digits)? */
function isDecimal(s: string): bool {
  let i = 0;
  const n = s.length;
  if (i < n && (s.charCodeAt(i) == 43 || s.charCodeAt(i) == 45)) i++;
  let digits = 0;
  while (i < n && isDigit(s.charCodeAt(i))) { i++; digits++; }
  if (i < n && s.charCodeAt(i) == 46) {
    i++;
    while (i < n && isDigit(s.charCodeAt(i))) { i++; digits++; }
  }
  if (digits == 0) return false;
  if (i < n && (s.charCodeAt(i) == 101 || s.charCodeAt(i) == 69)) {
    i++;
    if (i < n && (s.charCodeAt(i) == 43 || s.charCodeAt(i) == 45)) i++;
    let exp = 0;
    while (i < n && isDigit(s.charCodeAt(i))) { i++; exp++; }
    if (exp == 0) return false;
  }
  return i == n;
}

const OPTION: usize = memory.data(12, 4); // option<string> from get-parameter

// Read once per instance: config parameters never change while a model
// version is loaded. AssemblyScript has no exceptions that can be caught, so
// errors are values.
let loaded = false;
let mean: f32 = 0;
let std: f32 = 1;
let configError: PluginError | null = null;

function readConfig(): void {
  if (loaded) return;
  loaded = true;
  const m = paramOrError("mean", 0);
  if (configError) return;
  const s = paramOrError("std", 1);
  if (configError) return;
  mean = <f32>m;
  std = <f32>s;
  if (std == 0) configError = new PluginError(INVALID_ARGUMENT, "config parameter 'std' must not be 0");
}

function paramOrError(key: string, fallback: f64): f64 {
  const k = String.UTF8.encode(key);
  hostGetParameter(changetype<usize>(k), <usize>k.byteLength, OPTION);
  if (load<u8>(OPTION) == 0) return fallback;
  const raw = loadString(OPTION + 4);
  release(load<u32>(OPTION, 4), load<u32>(OPTION, 8)); // the host allocated it with cabi_realloc
  const text = raw.trim();
  const value = isDecimal(text) ? parseFloat(text) : NaN;
  if (!isFinite(value)) {
    configError = new PluginError(INVALID_ARGUMENT, `config parameter '${key}' must be a finite number, got '${raw}'`);
  }
  return value;
}

// --- exports -----------------------------------------------------------------------------

function storeSpec(at: usize, name: string): void {
  storeString(at, name);
  store<u8>(at, FP32, 8);
  const dims = alloc(8);
  owned.push(dims);
  store<i64>(dims, -1);
  store<u32>(at, <u32>dims, 12);
  store<u32>(at, 1, 16);
}

// kiln:plugin/processor@1.0.0#metadata
export function metadata(): usize {
  const rec = alloc(32);
  owned.push(rec);
  storeString(rec, "normalize-assemblyscript");
  storeString(rec + 8, "1.0.0");
  const inputs = alloc(SPEC_SIZE);
  owned.push(inputs);
  storeSpec(inputs, "INPUT");
  const outputs = alloc(SPEC_SIZE);
  owned.push(outputs);
  storeSpec(outputs, "OUTPUT");
  store<u32>(rec, <u32>inputs, 16);
  store<u32>(rec, 1, 20);
  store<u32>(rec, <u32>outputs, 24);
  store<u32>(rec, 1, 28);
  return rec;
}

// cabi_post_kiln:plugin/processor@1.0.0#metadata (and #process)
export function post_return(_ret: usize): void {
  for (let i = 0; i < owned.length; i++) heap.free(owned[i]);
  owned.length = 0;
}

function fail(kind: u8, message: string): usize {
  store<u8>(RET, 1);
  store<u8>(RET, kind, 4);
  storeString(RET + 8, message);
  return RET;
}

/** Frees what kiln passed in (all of it is ours), except blocks set to 0. */
function freeInputs(inputs: usize, count: usize, params: usize, paramCount: usize): void {
  for (let i: usize = 0; i < count; i++) {
    const t = inputs + i * TENSOR_SIZE;
    release(load<u32>(t), load<u32>(t, 4));
    release(load<u32>(t, 12), load<u32>(t, 16) * 8);
    release(load<u32>(t, 20), load<u32>(t, 24));
    const elements = load<u32>(t, 28);
    const n = load<u32>(t, 32);
    for (let j: u32 = 0; j < n; j++) release(load<u32>(elements + j * 8), load<u32>(elements + j * 8, 4));
    release(elements, n * 8);
  }
  release(inputs, count * TENSOR_SIZE);
  for (let i: usize = 0; i < paramCount; i++) {
    const p = params + i * PARAM_SIZE;
    release(load<u32>(p), load<u32>(p, 4));
    if (load<u8>(p, 8) == 3) release(load<u32>(p, 16), load<u32>(p, 20)); // text
  }
  release(params, paramCount * PARAM_SIZE);
}

// kiln:plugin/processor@1.0.0#process
export function process(inputs: usize, count: usize, params: usize, paramCount: usize): usize {
  const ret = run(inputs, count);
  freeInputs(inputs, count, params, paramCount);
  return ret;
}

function run(inputs: usize, count: usize): usize {
  readConfig();
  const err = configError;
  if (err) return fail(err.kind, err.message);
  for (let i: usize = 0; i < count; i++) {
    const t = inputs + i * TENSOR_SIZE;
    if (loadString(t) != "INPUT") continue;
    if (load<u8>(t, 8) != FP32) return fail(INVALID_ARGUMENT, "input 'INPUT' must be FP32");
    const data = <usize>load<u32>(t, 20);
    const size = <usize>load<u32>(t, 24);
    if (size % 4 != 0) return fail(INVALID_ARGUMENT, `input 'INPUT' has ${size} bytes, not a multiple of 4`);
    // In place, in the input's own buffer (wasm is little-endian, like the
    // wire format; unaligned loads and stores are allowed).
    for (let p = data; p < data + size; p += 4) {
      store<f32>(p, (load<f32>(p) - mean) / std);
    }
    // The output takes over the input's shape and data blocks.
    const out = alloc(TENSOR_SIZE);
    owned.push(out);
    storeString(out, "OUTPUT");
    store<u8>(out, FP32, 8);
    store<u64>(out + 12, load<u64>(t, 12)); // shape (ptr, len)
    store<u64>(out + 20, load<u64>(t, 20)); // data (ptr, len)
    store<u32>(out, 8, 28);                 // elements: empty
    store<u32>(out, 0, 32);
    if (load<u32>(t, 16) != 0) owned.push(load<u32>(t, 12));
    if (size != 0) owned.push(data);
    store<u32>(t, 0, 16); // not freed with the inputs
    store<u32>(t, 0, 24);
    store<u8>(RET, 0);
    store<u32>(RET, <u32>out, 4);
    store<u32>(RET, 1, 8);
    return RET;
  }
  return fail(INVALID_ARGUMENT, "missing input 'INPUT'");
}

// abort() (a failed assertion, an out-of-range index) logs through host.log,
// then traps; asc is told to use it with --use abort=normalize/onAbort.
function onAbort(message: string | null, file: string | null, line: u32, column: u32): void {
  let text = "normalize-assemblyscript aborted";
  if (message) text += ": " + message;
  if (file) text += " at " + file + ":" + line.toString() + ":" + column.toString();
  const utf8 = String.UTF8.encode(text);
  hostLog(4 /* error */, changetype<usize>(utf8), <usize>utf8.byteLength, 8, 0);
  unreachable();
}
